"""The reference sample a deployment's traffic is compared against, built from rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from atelier.errors import InvalidArgument
from services.monitor.drift.kinds import ColumnKind, check_present, infer_kind, numeric_values


def column_array(column: str, values: list[Any]) -> npt.NDArray[Any]:
    """A row-major column as an array: floats, integers, booleans or strings, else Python objects."""
    for row, value in enumerate(values):
        if value is None:
            raise InvalidArgument(f"column {column!r} has a missing value at row {row}; every row needs a value")
    types = {type(value) for value in values}
    if types <= {int, float} or types <= {bool} or types <= {str}:
        return np.array(values)
    return np.array(values, dtype=object)


def rows_to_columns(rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None) -> dict[str, list[Any]]:
    """Transpose rows that must all have the same columns (those of the first row unless `columns` is given)."""
    result: dict[str, list[Any]] | None = None if columns is None else {name: [] for name in columns}
    for number, row in enumerate(rows):
        if result is None:
            result = {name: [] for name in row}
        if row.keys() != result.keys():
            missing = sorted(result.keys() - row.keys())
            extra = sorted(row.keys() - result.keys())
            raise InvalidArgument(
                f"row {number} does not have the expected columns: missing {missing}, unexpected {extra} "
                f"(expected: {', '.join(result)})"
            )
        for name, value in row.items():
            result[name].append(value)
    if not result:
        raise InvalidArgument("no rows: a reference needs at least one row with at least one column")
    return result


@dataclass(frozen=True)
class Reference:
    """Reference columns (equal length, no missing values), their kinds, and which one is the prediction."""

    columns: Mapping[str, npt.NDArray[Any]]
    kinds: Mapping[str, ColumnKind]
    prediction: str | None = None
    prepared: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What comparisons keep of a column between calls (see `drift.compare`), by column name."""

    @property
    def features(self) -> list[str]:
        return [name for name in self.kinds if name != self.prediction]

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, npt.NDArray[Any]],
        *,
        kinds: Mapping[str, ColumnKind] | None = None,
        prediction: str | None = None,
    ) -> Reference:
        """Validate the columns and infer each kind not given in `kinds` the way Evidently does."""
        if not columns:
            raise InvalidArgument("a reference needs at least one column")
        given = dict(kinds or {})
        for name in given:
            if name not in columns:
                raise InvalidArgument(f"kind given for unknown column {name!r}; columns: {', '.join(columns)}")
        if prediction is not None and prediction not in columns:
            raise InvalidArgument(f"prediction column {prediction!r} is not among the columns: {', '.join(columns)}")
        if prediction is not None and len(columns) == 1:
            raise InvalidArgument(f"a reference needs a feature column besides the prediction {prediction!r}")
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidArgument(f"reference columns differ in length: {lengths}")
        arrays: dict[str, npt.NDArray[Any]] = {}
        resolved: dict[str, ColumnKind] = {}
        for name, values in columns.items():
            array = np.asarray(values)
            check_present(name, array)
            resolved[name] = given.get(name) or infer_kind(name, array)
            arrays[name] = numeric_values(name, array) if resolved[name] is ColumnKind.NUMERIC else array
        return cls(arrays, resolved, prediction)

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, Any]],
        *,
        kinds: Mapping[str, ColumnKind] | None = None,
        prediction: str | None = None,
    ) -> Reference:
        """A reference from rows such as a dataset version's records: every row with the same columns."""
        table = rows_to_columns(rows)
        return cls.from_columns(
            {name: column_array(name, values) for name, values in table.items()}, kinds=kinds, prediction=prediction
        )
