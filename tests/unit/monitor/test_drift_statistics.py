"""Per-column drift: the test Evidently would choose, its score and its verdict, on synthetic samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from atelier.errors import InvalidArgument
from services.monitor.drift import ColumnKind, Reference, StatTest, column_drift, compare, default_test, infer_kind
from services.monitor.drift.stattests import wasserstein_of_sorted

NUMERIC, CATEGORICAL = ColumnKind.NUMERIC, ColumnKind.CATEGORICAL


def _normal(rows: int, mean: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 1.0, rows)


def _colours(rows: int, red: float, seed: int) -> np.ndarray:
    rest = (1 - red) / 3
    return np.random.default_rng(seed).choice(["red", "green", "blue", "grey"], rows, p=[red, rest, rest, rest])


@pytest.mark.parametrize(
    ("kind", "reference_rows", "distinct", "expected"),
    [
        (NUMERIC, 1000, 50, StatTest.KS),
        (NUMERIC, 1001, 50, StatTest.WASSERSTEIN),
        (NUMERIC, 1000, 5, StatTest.CHI_SQUARED),
        (NUMERIC, 1000, 2, StatTest.Z),
        (NUMERIC, 1001, 5, StatTest.JENSEN_SHANNON),
        (NUMERIC, 1001, 6, StatTest.WASSERSTEIN),
        (CATEGORICAL, 1000, 3, StatTest.CHI_SQUARED),
        (CATEGORICAL, 1000, 2, StatTest.Z),
        (CATEGORICAL, 1001, 2, StatTest.JENSEN_SHANNON),
        (CATEGORICAL, 5000, 40, StatTest.JENSEN_SHANNON),
    ],
)
def test_the_default_test_follows_reference_size_kind_and_distinct_values(
    kind: ColumnKind, reference_rows: int, distinct: int, expected: StatTest
) -> None:
    assert default_test(kind, reference_rows, distinct) is expected


@pytest.mark.parametrize(("reference_rows", "test"), [(500, StatTest.KS), (5000, StatTest.WASSERSTEIN)])
def test_numeric_same_distribution_does_not_drift_and_shifted_does(reference_rows: int, test: StatTest) -> None:
    reference = _normal(reference_rows, 0.0, seed=1)
    same = column_drift("x", NUMERIC, reference, _normal(800, 0.0, seed=2))
    shifted = column_drift("x", NUMERIC, reference, _normal(800, 0.5, seed=3))
    assert (same.test, shifted.test) == (test, test)
    assert (same.drifted, shifted.drifted) == (False, True)
    assert same.threshold == shifted.threshold == test.default_threshold


def test_ks_score_is_the_two_sample_p_value() -> None:
    reference, current = _normal(300, 0.0, seed=4), _normal(200, 0.3, seed=5)
    drift = column_drift("x", NUMERIC, reference, current)
    assert drift.score == pytest.approx(stats.ks_2samp(reference, current).pvalue)


def test_wasserstein_is_normed_by_the_reference_standard_deviation() -> None:
    reference = np.random.default_rng(6).normal(0.0, 10.0, 2000)
    # Shifting every value by one reference standard deviation moves the distance by exactly 1.
    drift = column_drift("x", NUMERIC, reference, reference + np.std(reference))
    assert drift.test is StatTest.WASSERSTEIN
    assert drift.score == pytest.approx(1.0)


def test_wasserstein_of_a_constant_reference_uses_the_floor_scale() -> None:
    reference = np.concatenate([np.zeros(1500), np.arange(6.0)])
    drift = column_drift("x", NUMERIC, reference, reference + 0.001)
    assert drift.score == pytest.approx(0.001 / max(np.std(reference), 0.001))


@pytest.mark.parametrize(("reference_rows", "test"), [(600, StatTest.CHI_SQUARED), (4000, StatTest.JENSEN_SHANNON)])
def test_categorical_same_distribution_does_not_drift_and_shifted_does(reference_rows: int, test: StatTest) -> None:
    reference = _colours(reference_rows, 0.25, seed=7)
    # A p-value test flags about 5% of same-distribution samples: judge twenty of them.
    same = [column_drift("colour", CATEGORICAL, reference, _colours(900, 0.25, seed=100 + i)) for i in range(20)]
    shifted = column_drift("colour", CATEGORICAL, reference, _colours(900, 0.55, seed=9))
    assert {drift.test for drift in same} == {shifted.test} == {test}
    assert sum(drift.drifted for drift in same) <= 3
    assert shifted.drifted


def test_jensen_shannon_of_disjoint_categories_is_its_maximum() -> None:
    drift = column_drift("c", CATEGORICAL, np.array(["a"] * 1200 + ["b"] * 1200), np.array(["c"] * 50 + ["d"] * 50))
    assert drift.test is StatTest.JENSEN_SHANNON
    assert drift.score == pytest.approx(np.sqrt(np.log(2)))


def _flags(true: int, false: int) -> np.ndarray:
    return np.array([True] * true + [False] * false)


def test_two_categories_use_the_z_test_of_proportions() -> None:
    reference = _flags(240, 560)
    same = column_drift("flag", CATEGORICAL, reference, _flags(150, 350))
    shifted = column_drift("flag", CATEGORICAL, reference, _flags(180, 320))
    assert (same.test, same.score, same.drifted) == (StatTest.Z, pytest.approx(1.0), False)
    # 0.30 against 0.36, pooled 0.323...: z = -0.06 / sqrt(p (1 - p) (1/800 + 1/500)).
    pooled = (240 + 180) / 1300
    z = -0.06 / np.sqrt(pooled * (1 - pooled) * (1 / 800 + 1 / 500))
    assert shifted.score == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert shifted.drifted
    constant = column_drift("flag", CATEGORICAL, np.ones(10, dtype=bool), np.ones(5, dtype=bool))
    assert (constant.score, constant.drifted) == (1.0, False)


def test_a_category_missing_from_the_reference_is_drift() -> None:
    reference = np.array(["a", "b", "c"] * 100)
    drift = column_drift("c", CATEGORICAL, reference, np.array(["a", "b", "c", "new"] * 25))
    assert (drift.test, drift.score, drift.drifted) == (StatTest.CHI_SQUARED, 0.0, True)


def test_psi_is_an_explicit_choice_with_threshold_one_tenth() -> None:
    reference = _normal(3000, 0.0, seed=11)
    same = column_drift("x", NUMERIC, reference, _normal(1000, 0.0, seed=12), test=StatTest.PSI)
    shifted = column_drift("x", NUMERIC, reference, _normal(1000, 0.5, seed=13), test=StatTest.PSI)
    assert (same.test, same.threshold) == (StatTest.PSI, 0.1)
    assert same.score < 0.1 <= shifted.score
    assert (same.drifted, shifted.drifted) == (False, True)


def test_psi_of_categories_sums_share_differences_times_log_ratios() -> None:
    reference = np.array(["a"] * 50 + ["b"] * 50)
    current = np.array(["a"] * 80 + ["b"] * 20)
    drift = column_drift("c", CATEGORICAL, reference, current, test=StatTest.PSI)
    assert drift.score == pytest.approx((0.5 - 0.8) * np.log(0.5 / 0.8) + (0.5 - 0.2) * np.log(0.5 / 0.2))


def test_an_explicit_threshold_changes_the_verdict() -> None:
    reference, current = _normal(500, 0.0, seed=14), _normal(500, 0.15, seed=15)
    loose = column_drift("x", NUMERIC, reference, current, threshold=1e-12)
    strict = column_drift("x", NUMERIC, reference, current, threshold=0.99)
    assert (loose.drifted, strict.drifted) == (False, True)


def test_a_test_for_the_other_kind_is_refused_naming_the_column_and_allowed_tests() -> None:
    with pytest.raises(InvalidArgument, match=r"'chisquare' does not apply to numeric column 'x'.*ks.*psi"):
        column_drift("x", NUMERIC, _normal(10, 0, 1), _normal(10, 0, 2), test=StatTest.CHI_SQUARED)
    with pytest.raises(InvalidArgument, match=r"'ks' does not apply to categorical column 'c'"):
        column_drift("c", CATEGORICAL, np.array(["a", "b"]), np.array(["a"]), test=StatTest.KS)


@pytest.mark.parametrize("threshold", [0.0, -1.0, float("nan")])
def test_a_threshold_not_above_zero_is_refused(threshold: float) -> None:
    with pytest.raises(InvalidArgument, match="threshold for column 'x' must be above 0"):
        column_drift("x", NUMERIC, _normal(10, 0, 1), _normal(10, 0, 2), threshold=threshold)


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        (np.array([]), np.array([1.0]), "column 'x' has no values"),
        (np.array([1.0, np.nan]), np.array([1.0]), "column 'x' has 1 missing or infinite values"),
        (np.array([1.0, 2.0]), np.array([np.inf]), "column 'x' has 1 missing or infinite values"),
        (np.array(["a", "b"]), np.array([1.0]), "column 'x' is numeric but has values of type <U1"),
    ],
)
def test_bad_numeric_values_are_refused_naming_the_column(
    reference: np.ndarray, current: np.ndarray, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        column_drift("x", NUMERIC, reference, current)


def test_a_missing_category_is_refused_naming_the_column() -> None:
    with pytest.raises(InvalidArgument, match="column 'c' has a missing value at row 1"):
        column_drift("c", CATEGORICAL, np.array(["a", None], dtype=object), np.array(["a"]))


def test_categories_of_different_types_stay_apart() -> None:
    # 1 and "1" are different categories: nothing the current sample holds is in the reference.
    drift = column_drift("c", CATEGORICAL, np.array([1, 2] * 50), np.array(["1", "2"] * 50))
    assert (drift.test, drift.score, drift.drifted) == (StatTest.CHI_SQUARED, 0.0, True)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (np.array([0.5, 1.0]), NUMERIC),
        (np.arange(10), CATEGORICAL),
        (np.arange(11), NUMERIC),
        (np.array([True, False]), CATEGORICAL),
        (np.array(["a", "b", "a", "b"]), CATEGORICAL),
    ],
)
def test_kinds_are_inferred_from_type_and_distinct_values(values: np.ndarray, kind: ColumnKind) -> None:
    assert infer_kind("c", values) is kind


def test_strings_evidently_would_call_text_need_an_explicit_kind() -> None:
    with pytest.raises(InvalidArgument, match="column 'note' holds strings with 3 distinct values in 3 rows"):
        infer_kind("note", np.array(["a", "b", "c"]))


def test_mixed_value_types_are_refused_with_the_allowed_ones() -> None:
    with pytest.raises(InvalidArgument, match=r"column 'c' has values of type object \(int, str\); allowed"):
        infer_kind("c", np.array([1, "a"], dtype=object))


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        (np.random.default_rng(20).normal(0, 1, 5000), np.random.default_rng(21).normal(0.2, 1.5, 3000)),
        # Ties within and across the samples, and samples of very different sizes.
        (
            np.round(np.random.default_rng(22).normal(0, 1, 800), 1),
            np.round(np.random.default_rng(23).normal(0, 1, 7), 1),
        ),
        (np.array([1.0, 1.0, 2.0, 5.0]), np.array([1.0, 2.0, 2.0, 2.0, 9.0])),
        (np.array([3.0]), np.array([3.0])),
    ],
)
def test_wasserstein_of_sorted_samples_is_scipys(reference: np.ndarray, current: np.ndarray) -> None:
    expected = stats.wasserstein_distance(reference, current)
    assert wasserstein_of_sorted(np.sort(reference), np.sort(current)) == pytest.approx(expected, rel=1e-12, abs=0)


def test_a_reference_prepared_once_gives_the_reports_of_unprepared_columns() -> None:
    rng = np.random.default_rng(24)
    reference_columns = {
        "wide": rng.normal(0, 1, 1500),
        "few": rng.integers(0, 4, 1500).astype(float),  # 4 distinct: the current sample's decide the test
        "flat": np.zeros(1500),
        "small": rng.normal(0, 1, 1500),
        "label": rng.integers(0, 3, 1500),
    }
    current = {
        "wide": rng.normal(0.1, 1, 900),
        "few": rng.integers(0, 7, 900).astype(float),
        "flat": rng.normal(0, 0.01, 900),
        "small": rng.normal(0, 1, 900),
        "label": rng.integers(0, 3, 900),
    }
    kinds = {"few": NUMERIC, "flat": NUMERIC}
    reference = Reference.from_columns(reference_columns, kinds=kinds, prediction="label")
    tests = {"small": StatTest.KS}
    unprepared = {
        name: column_drift(name, kind, reference.columns[name], current[name], test=tests.get(name))
        for name, kind in reference.kinds.items()
    }
    for _ in range(2):  # prepared by the first comparison, reused by the second
        report = compare(reference, current, tests=tests)
        assert report.prediction is not None
        assert {c.column: c for c in (*report.features.columns, report.prediction)} == unprepared
    assert set(reference.prepared) == {"wide", "few", "flat", "small"}
