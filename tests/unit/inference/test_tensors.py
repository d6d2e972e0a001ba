"""Every v2 datatype through the codec: raw bytes -> numpy view -> torch -> numpy -> raw bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atelier.errors import InvalidArgument
from services.inference.tensors import DATATYPES, decode_raw, encode, from_torch, from_typed, to_torch

NUMERIC = [name for name in DATATYPES if name != "BYTES"]


def sample(name: str) -> np.ndarray:
    dt = DATATYPES[name]
    if name == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if name == "BF16":
        return torch.tensor([[1.5, -2.0, 3.25], [0.0, 1e-3, -7.0]]).to(torch.bfloat16).view(torch.uint16).numpy()
    return (np.arange(6).reshape(2, 3) * 3).astype(dt.numpy)


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_round_trip_through_torch(name: str) -> None:
    dt = DATATYPES[name]
    raw = encode(dt, sample(name))
    array = decode_raw("x", dt, (2, 3), raw)
    assert not array.flags.owndata  # a view over the request's bytes
    tensor = to_torch(dt, array.copy())
    assert str(tensor.dtype) == f"torch.{dt.torch}"
    assert encode(dt, from_torch(dt, tensor)) == raw


def test_bf16_is_viewed_not_converted() -> None:
    dt = DATATYPES["BF16"]
    values = torch.tensor([[1.5, -2.0, 3.25]]).to(torch.bfloat16)
    raw = values.view(torch.uint16).numpy().tobytes()
    tensor = to_torch(dt, decode_raw("x", dt, (1, 3), raw).copy())
    assert torch.equal(tensor, values)


def test_bytes_elements_are_length_prefixed() -> None:
    dt = DATATYPES["BYTES"]
    raw = b"".join(len(s).to_bytes(4, "little") + s for s in (b"ab", b"", b"\xffxyz"))
    array = decode_raw("s", dt, (3,), raw)
    assert array.tolist() == [b"ab", b"", b"\xffxyz"]
    assert encode(dt, array) == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x02\x00\x00\x00ab\x05\x00", "BYTES element 1 has a truncated 4-byte length"),
        (b"\x09\x00\x00\x00ab", "BYTES element 0 claims 9 bytes, only 2 remain"),
        (b"\x01\x00\x00\x00a", "unexpected number of string elements 1 for inference input 's', expecting 2"),
    ],
)
def test_malformed_bytes_are_named(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode_raw("s", DATATYPES["BYTES"], (2,), raw)


def test_byte_length_must_match_the_shape() -> None:
    with pytest.raises(InvalidArgument, match="unexpected total byte size 10 for input 'x', expecting 24"):
        decode_raw("x", DATATYPES["FP32"], (2, 3), b"\0" * 10)


def test_typed_values() -> None:
    assert from_typed("x", DATATYPES["INT16"], (2,), [1, -2]).tolist() == [1, -2]
    assert from_typed("s", DATATYPES["BYTES"], (1,), [b"hi"]).tolist() == [b"hi"]
    with pytest.raises(InvalidArgument, match="must travel as raw bytes"):
        from_typed("h", DATATYPES["FP16"], (1,), [1.0])
    with pytest.raises(InvalidArgument, match="unexpected number of elements 1 for input 'x', expecting 2"):
        from_typed("x", DATATYPES["INT32"], (2,), [1])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a", "b"], "input 'x' of datatype FP32 takes numbers: could not convert string to float"),
        ([1.0, None], "input 'x' of datatype FP32 has a null element"),
        ([[1.0], 2.0], "input 'x' of datatype FP32 takes numbers"),
    ],
)
def test_typed_values_that_are_not_numbers_are_named(values: list[object], expected: str) -> None:
    with pytest.raises(InvalidArgument, match=expected):
        from_typed("x", DATATYPES["FP32"], [2], values)


def test_integers_past_their_type_are_named() -> None:
    with pytest.raises(InvalidArgument, match="input 'x' of datatype INT8 takes numbers"):
        from_typed("x", DATATYPES["INT8"], [1], [1000])
