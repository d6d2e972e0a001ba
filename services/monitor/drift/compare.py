"""Per-column, per-dataset and prediction drift of a current sample against a reference."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from atelier.errors import InvalidArgument
from services.monitor.drift.kinds import ColumnKind, check_present, numeric_values
from services.monitor.drift.reference import Reference
from services.monitor.drift.stattests import (
    FEW_DISTINCT_VALUES,
    StatTest,
    default_test,
    score,
    wasserstein_of_sorted,
)

# Evidently's default: a dataset drifts when at least half of its columns drift.
DEFAULT_DRIFT_SHARE = 0.5


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: ColumnKind
    test: StatTest
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DatasetDrift:
    columns: tuple[ColumnDrift, ...]
    drift_share: float
    """The share of drifted columns at or above which the dataset drifts."""
    share_drifted: float
    drifted: bool

    @property
    def drifted_columns(self) -> int:
        return sum(column.drifted for column in self.columns)


@dataclass(frozen=True)
class DriftReport:
    features: DatasetDrift
    prediction: ColumnDrift | None


@dataclass(frozen=True)
class PreparedNumeric:
    """A numeric reference column as every comparison needs it, computed once: a monitor compares the same
    reference with a new window every few seconds, and sorting the reference again each time (for the
    distinct values and for Wasserstein) was about half of the comparison's work."""

    values: npt.NDArray[np.float64]
    ordered: npt.NDArray[np.float64]
    distinct: int
    scale: float
    """Normed Wasserstein's unit: the standard deviation, at least 0.001."""

    @classmethod
    def of(cls, column: str, reference: npt.NDArray[Any]) -> PreparedNumeric:
        values = numeric_values(column, np.asarray(reference))
        ordered = np.sort(values)
        distinct = int(np.count_nonzero(np.diff(ordered))) + 1  # what np.unique counts (finite values)
        return cls(values, ordered, distinct, max(float(np.std(values)), 0.001))


def prepared_numeric(reference: Reference, column: str) -> PreparedNumeric:
    """The reference's numeric column prepared, kept on the reference for the next comparison."""
    known = reference.prepared.get(column)
    if not isinstance(known, PreparedNumeric):
        known = reference.prepared[column] = PreparedNumeric.of(column, reference.columns[column])
    return known


def column_drift(
    column: str,
    kind: ColumnKind,
    reference: npt.NDArray[Any],
    current: npt.NDArray[Any],
    *,
    test: StatTest | None = None,
    threshold: float | None = None,
    prepared: PreparedNumeric | None = None,
) -> ColumnDrift:
    """One column's drift: Evidently's default test for it unless `test` is given, at its default threshold
    unless `threshold` is. `prepared` is the numeric `reference` prepared (the same values), which spares
    sorting it again."""
    if prepared is not None and kind is ColumnKind.NUMERIC:
        reference_values, current_values = prepared.values, numeric_values(column, np.asarray(current))
        # The test is chosen by whether there are more than FEW_DISTINCT_VALUES distinct values: when the
        # reference alone has more, so do both samples together, whatever the current one holds.
        distinct = (
            prepared.distinct
            if prepared.distinct > FEW_DISTINCT_VALUES
            else len(np.unique(np.concatenate([reference_values, current_values])))
        )
    else:
        reference_values, current_values = _comparable(column, kind, reference, current)
        distinct = len(np.unique(np.concatenate([reference_values, current_values])))
    # Evidently's default may compare a numeric column with few values as categories (chi-squared, Z);
    # a test chosen explicitly must be one that applies to the column's kind.
    chosen = test or default_test(kind, len(reference_values), distinct)
    if test is not None and kind not in test.kinds:
        allowed = sorted(t.value for t in StatTest if kind in t.kinds)
        raise InvalidArgument(
            f"test {chosen.value!r} does not apply to {kind.value} column {column!r}; allowed: {', '.join(allowed)}"
        )
    limit = chosen.default_threshold if threshold is None else threshold
    if not limit > 0:  # also refuses NaN
        raise InvalidArgument(f"threshold for column {column!r} must be above 0, got {limit}")
    if prepared is not None and kind is ColumnKind.NUMERIC and chosen is StatTest.WASSERSTEIN:
        value = wasserstein_of_sorted(prepared.ordered, np.sort(current_values)) / prepared.scale
    else:
        value = score(chosen, kind, reference_values, current_values)
    return ColumnDrift(column, kind, chosen, value, limit, chosen.drifted(value, limit))


def dataset_drift(columns: tuple[ColumnDrift, ...], drift_share: float = DEFAULT_DRIFT_SHARE) -> DatasetDrift:
    """The dataset drifts when the share of drifted columns is at least `drift_share`."""
    if not columns:
        raise InvalidArgument("dataset drift needs at least one column")
    if not 0 < drift_share <= 1:
        raise InvalidArgument(f"drift_share must be in (0, 1], got {drift_share}")
    share = sum(column.drifted for column in columns) / len(columns)
    return DatasetDrift(columns, drift_share, share, share >= drift_share)


def compare(
    reference: Reference,
    current: Mapping[str, npt.NDArray[Any]],
    *,
    tests: Mapping[str, StatTest] | None = None,
    thresholds: Mapping[str, float] | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
) -> DriftReport:
    """Every feature column and the prediction column of `current` against the reference.

    `current` must have exactly the reference's columns. `tests` and `thresholds` override Evidently's
    choices per column; the dataset verdict covers the features, the prediction is judged on its own.
    """
    _check_columns(reference, current)
    chosen_tests, limits = dict(tests or {}), dict(thresholds or {})
    for name in [*chosen_tests, *limits]:
        if name not in reference.kinds:
            raise InvalidArgument(
                f"unknown column {name!r} in tests or thresholds; columns: {', '.join(reference.kinds)}"
            )

    def judge(name: str) -> ColumnDrift:
        kind = reference.kinds[name]
        return column_drift(
            name,
            kind,
            reference.columns[name],
            current[name],
            test=chosen_tests.get(name),
            threshold=limits.get(name),
            prepared=prepared_numeric(reference, name) if kind is ColumnKind.NUMERIC else None,
        )

    features = tuple(judge(name) for name in reference.features)
    prediction = judge(reference.prediction) if reference.prediction else None
    return DriftReport(dataset_drift(features, drift_share), prediction)


def _check_columns(reference: Reference, current: Mapping[str, npt.NDArray[Any]]) -> None:
    missing = [name for name in reference.kinds if name not in current]
    extra = [name for name in current if name not in reference.kinds]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(map(repr, missing))}")
    if extra:
        problems.append(f"not in the reference {', '.join(map(repr, extra))}")
    if problems:
        raise InvalidArgument(
            f"current columns do not match the reference: {'; '.join(problems)} "
            f"(reference columns: {', '.join(reference.kinds)})"
        )


def _comparable(
    column: str, kind: ColumnKind, reference: npt.NDArray[Any], current: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Numeric columns as floats; categorical ones as integer codes over the values of both samples."""
    reference, current = np.asarray(reference), np.asarray(current)
    if kind is ColumnKind.NUMERIC:
        return numeric_values(column, reference), numeric_values(column, current)
    check_present(column, reference)
    check_present(column, current)
    if reference.dtype.kind == current.dtype.kind and reference.dtype.kind != "O":
        codes = np.unique(np.concatenate([reference, current]), return_inverse=True)[1]
    else:
        # Different value types (or Python objects): 1 and "1" stay different categories.
        index: dict[tuple[type, object], int] = {}
        keys = [(type(value), value) for value in [*reference.tolist(), *current.tolist()]]
        codes = np.array([index.setdefault(key, len(index)) for key in keys], dtype=np.int64)
    return codes[: len(reference)], codes[len(reference) :]
