"""The drift module computes what the `evidently` package (0.7) computes, on the same data."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from services.monitor.drift import ColumnKind, Reference, StatTest, column_drift, compare, infer_kind

evidently = pytest.importorskip("evidently", reason="the evidently package is not installed (dev extra)")
pd = pytest.importorskip("pandas")

from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.core.datasets import infer_column_type  # noqa: E402
from evidently.metrics import ValueDrift  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

DISPLAY_NAMES = {
    "K-S p_value": StatTest.KS,
    "Wasserstein distance (normed)": StatTest.WASSERSTEIN,
    "chi-square p_value": StatTest.CHI_SQUARED,
    "Z-test p_value": StatTest.Z,
    "Jensen-Shannon distance": StatTest.JENSEN_SHANNON,
    "PSI": StatTest.PSI,
    # A method passed by name keeps that name in the metric's configuration.
    **{test.value: test for test in StatTest},
}


def _evidently_drift(
    reference: dict[str, npt.NDArray[Any]],
    current: dict[str, npt.NDArray[Any]],
    kinds: dict[str, ColumnKind],
    methods: dict[str, StatTest] | None = None,
) -> dict[str, tuple[StatTest, float, bool]]:
    """Evidently's (test, score, drifted) per column, from ValueDrift metrics and their default tests."""
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k is ColumnKind.NUMERIC],
        categorical_columns=[c for c, k in kinds.items() if k is ColumnKind.CATEGORICAL],
    )
    metrics = [ValueDrift(column=c, method=(methods or {}).get(c)) for c in kinds]
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(pd.DataFrame(current), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame(reference), data_definition=definition),
    )
    result = snapshot.dict()
    failed = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in result["tests"]}
    out = {}
    for metric in result["metrics"]:
        column, display = metric["config"]["column"], metric["config"]["method"]
        out[column] = (DISPLAY_NAMES[display], float(metric["value"]), failed[column])
    return out


def _agree(
    reference: dict[str, npt.NDArray[Any]],
    current: dict[str, npt.NDArray[Any]],
    kinds: dict[str, ColumnKind],
    methods: dict[str, StatTest] | None = None,
) -> dict[str, bool]:
    theirs = _evidently_drift(reference, current, kinds, methods)
    verdicts = {}
    for name, kind in kinds.items():
        ours = column_drift(name, kind, reference[name], current[name], test=(methods or {}).get(name))
        test, value, drifted = theirs[name]
        assert ours.test is test, name
        assert ours.score == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert ours.drifted is drifted, name
        verdicts[name] = drifted
    return verdicts


def _samples(rows: int, shift: float, seed: int) -> dict[str, npt.NDArray[Any]]:
    rng = np.random.default_rng(seed)
    tilt = min(shift, 0.5)
    return {
        "gauss": rng.normal(shift, 1.0, rows),
        "skewed": rng.exponential(1.0 + shift, rows),
        "few_values": rng.choice([1.0, 2.0, 3.0, 4.0], rows, p=[0.4 - tilt / 2, 0.3, 0.2, 0.1 + tilt / 2]),
        "colour": rng.choice(["red", "green", "blue", "grey"], rows, p=[0.4 - tilt / 2, 0.3, 0.2, 0.1 + tilt / 2]),
        "flag": rng.choice(["yes", "no"], rows, p=[0.7 - tilt / 2, 0.3 + tilt / 2]),
    }


KINDS = {
    "gauss": ColumnKind.NUMERIC,
    "skewed": ColumnKind.NUMERIC,
    "few_values": ColumnKind.NUMERIC,
    "colour": ColumnKind.CATEGORICAL,
    "flag": ColumnKind.CATEGORICAL,
}


@pytest.mark.parametrize("reference_rows", [600, 1000, 1001, 3000])
@pytest.mark.parametrize("shift", [0.0, 0.05, 0.4])
def test_default_tests_scores_and_verdicts_agree_with_evidently(reference_rows: int, shift: float) -> None:
    reference, current = _samples(reference_rows, 0.0, seed=1), _samples(800, shift, seed=2)
    verdicts = _agree(reference, current, KINDS)
    if shift == 0.4:
        assert all(verdicts.values()), verdicts


@pytest.mark.parametrize("reference_rows", [600, 3000])
def test_psi_and_jensen_shannon_chosen_explicitly_agree_with_evidently(reference_rows: int) -> None:
    reference, current = _samples(reference_rows, 0.0, seed=3), _samples(700, 0.2, seed=4)
    kinds = {name: KINDS[name] for name in ("gauss", "few_values", "colour")}
    _agree(reference, current, kinds, dict.fromkeys(kinds, StatTest.PSI))
    _agree(reference, current, kinds, dict.fromkeys(kinds, StatTest.JENSEN_SHANNON))


def test_a_category_new_in_the_current_sample_agrees_with_evidently() -> None:
    rng = np.random.default_rng(5)
    reference = {"colour": rng.choice(["red", "green", "blue"], 400)}
    current = {"colour": rng.choice(["red", "green", "blue", "purple"], 300)}
    kinds = {"colour": ColumnKind.CATEGORICAL}
    assert _agree(reference, current, kinds) == {"colour": True}
    _agree(reference, current, kinds, {"colour": StatTest.PSI})


@pytest.mark.parametrize("drifting", [1, 2, 3])
def test_dataset_verdict_agrees_with_evidently_at_the_half_threshold(drifting: int) -> None:
    rng = np.random.default_rng(6)
    names = ["a", "b", "c", "d"]
    reference = {name: rng.normal(0, 1, 800) for name in names}
    current = {name: rng.normal(1.0 if i < drifting else 0.0, 1, 500) for i, name in enumerate(names)}
    kinds = dict.fromkeys(names, ColumnKind.NUMERIC)
    report = compare(Reference.from_columns(reference, kinds=kinds), current)

    definition = DataDefinition(numerical_columns=names)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(pd.DataFrame(current), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame(reference), data_definition=definition),
    )
    result = snapshot.dict()
    share = next(m["value"] for m in result["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount"))
    share_test = next(
        t for t in result["tests"] if t["metric_config"]["params"]["type"].endswith("DriftedColumnsCount")
    )
    assert report.features.share_drifted == pytest.approx(share["share"])
    assert report.features.drifted is (share_test["status"] == "FAIL")
    assert report.features.drifted is (drifting >= 2)


def test_prediction_drift_agrees_with_evidently() -> None:
    rng = np.random.default_rng(7)
    reference = {"x": rng.normal(0, 1, 900), "label": rng.choice(["cat", "dog", "eel"], 900)}
    current = {"x": rng.normal(0, 1, 400), "label": rng.choice(["cat", "dog", "eel"], 400, p=[0.6, 0.3, 0.1])}
    kinds = {"x": ColumnKind.NUMERIC, "label": ColumnKind.CATEGORICAL}
    report = compare(Reference.from_columns(reference, kinds=kinds, prediction="label"), current)
    test, value, drifted = _evidently_drift(reference, current, kinds)["label"]
    assert report.prediction is not None
    assert (report.prediction.test, report.prediction.drifted) == (test, drifted)
    assert report.prediction.score == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert report.prediction.drifted
    assert [c.column for c in report.features.columns] == ["x"]


@pytest.mark.parametrize(
    "values",
    [
        np.array([0.5, 1.5, 2.5]),
        np.arange(10),
        np.arange(11),
        np.array([True, False, True]),
        np.array(["a", "b", "a", "b"]),
    ],
)
def test_column_kinds_are_inferred_as_evidently_infers_them(values: npt.NDArray[Any]) -> None:
    assert (
        infer_kind("c", values).value
        == {"num": "numeric", "cat": "categorical"}[infer_column_type(pd.Series(values)).value]
    )
