"""Numeric or categorical: how a column is compared, decided the way Evidently 0.7 infers column types."""

from __future__ import annotations

import enum
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from atelier.errors import InvalidArgument

# Evidently treats an integer column with at most this many distinct values as categorical.
INTEGER_CARDINALITY_LIMIT = 10


class ColumnKind(enum.StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


def infer_kind(column: str, values: npt.NDArray[Any]) -> ColumnKind:
    """The kind Evidently would infer from these values' type and number of distinct values.

    Floats are numeric; integers are categorical up to 10 distinct values, numeric above; booleans and
    strings are categorical. Strings with more distinct values than half the rows are what Evidently
    calls text, which has no drift test here: declare such a column categorical explicitly.
    """
    check_present(column, values)
    kind = values.dtype.kind
    if kind == "f":
        return ColumnKind.NUMERIC
    if kind in "iu":
        distinct = len(np.unique(values))
        return ColumnKind.CATEGORICAL if distinct <= INTEGER_CARDINALITY_LIMIT else ColumnKind.NUMERIC
    if kind == "b":
        return ColumnKind.CATEGORICAL
    if kind in "USO" and all(isinstance(value, str | bytes) for value in values.tolist()):
        distinct = len(set(values.tolist()))
        if distinct > len(values) * 0.5:
            raise InvalidArgument(
                f"column {column!r} holds strings with {distinct} distinct values in {len(values)} rows, "
                "which Evidently treats as text; text drift is not supported: declare the column "
                f"{ColumnKind.CATEGORICAL.value!r} to compare its values as categories"
            )
        return ColumnKind.CATEGORICAL
    raise InvalidArgument(
        f"column {column!r} has values of type {values.dtype} ({_sample_types(values)}); "
        "allowed: all floats or integers (numeric), or all integers, booleans or strings (categorical)"
    )


def check_present(column: str, values: npt.NDArray[Any]) -> None:
    """Refuse an empty column or one with a missing value (None, NaN) or an infinity."""
    if values.ndim != 1:
        raise InvalidArgument(f"column {column!r} must be one-dimensional, got shape {values.shape}")
    if len(values) == 0:
        raise InvalidArgument(f"column {column!r} has no values; at least one row is needed")
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise InvalidArgument(
                f"column {column!r} has {len(bad)} missing or infinite values (first at row {bad[0]}, "
                f"{values[bad[0]]}); only finite numbers are allowed"
            )
    elif values.dtype.kind == "O":
        for row, value in enumerate(values.tolist()):
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                raise InvalidArgument(
                    f"column {column!r} has a missing value at row {row} ({value}); every row needs a value"
                )


def numeric_values(column: str, values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """The column as floats, or a clear error when it does not hold numbers."""
    check_present(column, values)
    if values.dtype.kind not in "fiub" and not all(isinstance(value, int | float) for value in values.tolist()):
        raise InvalidArgument(
            f"column {column!r} is numeric but has values of type {values.dtype} ({_sample_types(values)}); "
            "allowed: integers or floats"
        )
    return values.astype(np.float64)


def _sample_types(values: npt.NDArray[Any]) -> str:
    names = sorted({type(value).__name__ for value in values[:1000].tolist()})
    return ", ".join(names)
