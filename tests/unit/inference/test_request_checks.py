"""An inference request's input shape: every dimension given, none negative, fitting the model's."""

from __future__ import annotations

import pytest

from atelier.errors import InvalidArgument
from services.inference.requests import TensorInput, _check_input
from services.inference.signature import TensorSpec
from services.inference.tensors import DATATYPES

SPEC = TensorSpec("x", DATATYPES["FP32"], (-1, 4))


def test_a_negative_dimension_is_named_as_such() -> None:
    with pytest.raises(InvalidArgument, match=r"input 'x' has shape \[-1,4\]: a request gives every dimension"):
        _check_input("m", SPEC, TensorInput("x", "FP32", (-1, 4)), 8, True)


def test_a_shape_that_does_not_fit() -> None:
    with pytest.raises(InvalidArgument, match=r"Expected \[-1,4\], got \[2,3\]"):
        _check_input("m", SPEC, TensorInput("x", "FP32", (2, 3)), 8, True)
    _check_input("m", SPEC, TensorInput("x", "FP32", (2, 4)), 8, True)
