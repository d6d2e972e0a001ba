"""Dataset and prediction drift, the reference built from rows, and the sliding window of current rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from atelier.errors import InvalidArgument
from services.monitor.drift import (
    ColumnDrift,
    ColumnKind,
    Reference,
    SlidingWindow,
    StatTest,
    compare,
    dataset_drift,
)


def _verdicts(*drifted: bool) -> tuple[ColumnDrift, ...]:
    return tuple(
        ColumnDrift(f"c{i}", ColumnKind.NUMERIC, StatTest.KS, 0.0 if d else 1.0, 0.05, d) for i, d in enumerate(drifted)
    )


@pytest.mark.parametrize(
    ("drifted", "share", "verdict"),
    [
        ((True, False, False, False), 0.25, False),
        ((True, True, False, False), 0.5, True),
        ((True, True, True, False), 0.75, True),
        ((True, False, False), 1 / 3, False),
        ((True, True, False), 2 / 3, True),
    ],
)
def test_a_dataset_drifts_when_at_least_half_its_columns_drift(
    drifted: tuple[bool, ...], share: float, verdict: bool
) -> None:
    result = dataset_drift(_verdicts(*drifted))
    assert (result.share_drifted, result.drifted, result.drift_share) == (pytest.approx(share), verdict, 0.5)
    assert result.drifted_columns == sum(drifted)


def test_the_drift_share_can_be_changed_and_must_be_a_share() -> None:
    assert not dataset_drift(_verdicts(True, True, False, False), drift_share=0.75).drifted
    with pytest.raises(InvalidArgument, match=r"drift_share must be in \(0, 1\], got 1.5"):
        dataset_drift(_verdicts(True), drift_share=1.5)
    with pytest.raises(InvalidArgument, match="at least one column"):
        dataset_drift(())


def _rows(count: int, shift: float, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "age": float(rng.normal(40 + 10 * shift, 10)),
            "income": float(rng.lognormal(10, 0.5)),
            "plan": str(rng.choice(["basic", "plus", "pro"], p=[0.5, 0.3, 0.2])),
            "score": float(rng.normal(shift, 1)),
        }
        for _ in range(count)
    ]


def test_compare_judges_features_and_prediction_from_rows() -> None:
    reference = Reference.from_rows(_rows(800, 0.0, seed=1), prediction="score")
    assert reference.kinds == {
        "age": ColumnKind.NUMERIC,
        "income": ColumnKind.NUMERIC,
        "plan": ColumnKind.CATEGORICAL,
        "score": ColumnKind.NUMERIC,
    }
    window = SlidingWindow(list(reference.kinds), max_rows=500)
    for row in _rows(500, 0.0, seed=2):
        window.add(row)
    calm = compare(reference, window.columns())
    assert [c.column for c in calm.features.columns] == ["age", "income", "plan"]
    assert [c.test for c in calm.features.columns] == [StatTest.KS, StatTest.KS, StatTest.CHI_SQUARED]
    assert not calm.features.drifted
    assert calm.prediction is not None
    assert not calm.prediction.drifted

    for row in _rows(500, 1.0, seed=3):
        window.add(row)
    shifted = compare(reference, window.columns())
    assert [c.drifted for c in shifted.features.columns] == [True, False, False]
    assert not shifted.features.drifted  # one column in three
    assert shifted.prediction is not None
    assert shifted.prediction.drifted


def test_compare_takes_tests_and_thresholds_per_column() -> None:
    reference = Reference.from_rows(_rows(300, 0.0, seed=4))
    current = Reference.from_rows(_rows(300, 0.0, seed=5)).columns
    report = compare(reference, current, tests={"age": StatTest.PSI}, thresholds={"plan": 0.99})
    age, _, plan, _ = report.features.columns
    assert (age.test, age.threshold) == (StatTest.PSI, 0.1)
    assert (plan.threshold, plan.drifted) == (0.99, True)
    with pytest.raises(InvalidArgument, match="unknown column 'height' in tests or thresholds; columns: age"):
        compare(reference, current, thresholds={"height": 0.1})


def test_current_columns_must_match_the_reference() -> None:
    reference = Reference.from_rows(_rows(50, 0.0, seed=6))
    current = dict(reference.columns)
    current.pop("plan")
    current["colour"] = np.array(["red"] * 50)
    with pytest.raises(
        InvalidArgument, match="missing 'plan'; not in the reference 'colour' \\(reference columns: age, income"
    ):
        compare(reference, current)


def test_an_empty_reference_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="no rows: a reference needs at least one row"):
        Reference.from_rows([])
    with pytest.raises(InvalidArgument, match="column 'age' has no values"):
        Reference.from_columns({"age": np.array([])})


def test_rows_with_other_columns_are_refused_naming_them() -> None:
    rows = [{"a": 1.0, "b": "x"}, {"a": 2.0, "c": "y"}]
    with pytest.raises(InvalidArgument, match=r"row 1 does not have the expected columns: missing \['b'\], "):
        Reference.from_rows(rows)


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "column 'a' has a missing value at row 1"), (float("nan"), "column 'a' has 1 missing")],
)
def test_missing_values_in_the_reference_are_refused(value: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Reference.from_rows([{"a": 1.0}, {"a": value}, {"a": 3.0}])


def test_reference_kinds_and_prediction_are_checked() -> None:
    columns = {"a": np.arange(20), "b": np.array(["x", "y"] * 10)}
    declared = Reference.from_columns(columns, kinds={"a": ColumnKind.CATEGORICAL}, prediction="b")
    assert declared.kinds == {"a": ColumnKind.CATEGORICAL, "b": ColumnKind.CATEGORICAL}
    assert (declared.features, declared.rows) == (["a"], 20)
    with pytest.raises(InvalidArgument, match="prediction column 'label' is not among the columns: a, b"):
        Reference.from_columns(columns, prediction="label")
    with pytest.raises(InvalidArgument, match="kind given for unknown column 'z'"):
        Reference.from_columns(columns, kinds={"z": ColumnKind.NUMERIC})
    with pytest.raises(InvalidArgument, match="reference columns differ in length"):
        Reference.from_columns({"a": np.arange(3), "b": np.arange(4)})


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_keeps_the_last_rows() -> None:
    window = SlidingWindow(["x"], max_rows=3)
    for value in range(5):
        window.add({"x": float(value)})
    assert len(window) == 3
    assert window.columns()["x"].tolist() == [2.0, 3.0, 4.0]


def test_the_window_forgets_rows_older_than_its_age() -> None:
    clock = _Clock()
    window = SlidingWindow(["x", "y"], max_rows=100, max_age_seconds=60, clock=clock)
    window.add({"x": 1.0, "y": "a"})
    clock.now += 30
    window.add({"x": 2.0, "y": "b"})
    clock.now += 31
    assert window.columns()["x"].tolist() == [2.0]
    assert window.columns()["y"].tolist() == ["b"]
    clock.now += 30
    assert len(window) == 0
    with pytest.raises(InvalidArgument, match="the window has no rows yet"):
        window.columns()


def test_the_window_refuses_bad_rows_and_settings() -> None:
    window = SlidingWindow(["x", "y"], max_rows=10)
    with pytest.raises(InvalidArgument, match=r"missing \['y'\], unexpected \['z'\]"):
        window.add({"x": 1.0, "z": 2.0})
    with pytest.raises(InvalidArgument, match="column 'x' has a missing value"):
        window.add({"x": float("nan"), "y": 2.0})
    assert len(window) == 0
    with pytest.raises(InvalidArgument, match="max_rows must be at least 1, got 0"):
        SlidingWindow(["x"], max_rows=0)
    with pytest.raises(InvalidArgument, match="max_age_seconds must be above 0"):
        SlidingWindow(["x"], max_rows=5, max_age_seconds=0)
    with pytest.raises(InvalidArgument, match="distinct column names"):
        SlidingWindow(["x", "x"], max_rows=5)
