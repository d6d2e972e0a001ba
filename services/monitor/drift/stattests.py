"""Evidently 0.7's drift tests: which one a column gets, and the score each computes.

Every function takes a reference and a current sample and returns the test's score: a p-value for
Kolmogorov-Smirnov, chi-squared and the Z-test (small means different), a distance for normed
Wasserstein, Jensen-Shannon and PSI (large means different).
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial import distance

from services.monitor.drift.binning import category_counts, shares
from services.monitor.drift.kinds import ColumnKind

# The reference size up to which Evidently uses the statistical tests, above which the distances.
SMALL_REFERENCE_ROWS = 1000
# A numeric column with at most this many distinct values (reference and current) is compared as categories.
FEW_DISTINCT_VALUES = 5


class StatTest(enum.StrEnum):
    """The drift tests, named as Evidently names them."""

    KS = "ks"
    WASSERSTEIN = "wasserstein"
    CHI_SQUARED = "chisquare"
    Z = "z"
    JENSEN_SHANNON = "jensenshannon"
    PSI = "psi"

    @property
    def default_threshold(self) -> float:
        return 0.05 if self in _P_VALUE_TESTS else 0.1

    @property
    def kinds(self) -> frozenset[ColumnKind]:
        """The column kinds this test may be chosen for."""
        return _KINDS[self]

    def drifted(self, score: float, threshold: float) -> bool:
        """Evidently's verdict: a p-value at or under (KS) or under (chi-squared, Z) the threshold; a distance at
        or over it."""
        if self is StatTest.KS:
            return score <= threshold
        if self in _P_VALUE_TESTS:
            return score < threshold
        return score >= threshold


_P_VALUE_TESTS = frozenset({StatTest.KS, StatTest.CHI_SQUARED, StatTest.Z})
_BOTH = frozenset({ColumnKind.NUMERIC, ColumnKind.CATEGORICAL})
_KINDS: dict[StatTest, frozenset[ColumnKind]] = {
    StatTest.KS: frozenset({ColumnKind.NUMERIC}),
    StatTest.WASSERSTEIN: frozenset({ColumnKind.NUMERIC}),
    StatTest.CHI_SQUARED: frozenset({ColumnKind.CATEGORICAL}),
    StatTest.Z: frozenset({ColumnKind.CATEGORICAL}),
    StatTest.JENSEN_SHANNON: _BOTH,
    StatTest.PSI: _BOTH,
}


def default_test(kind: ColumnKind, reference_rows: int, distinct_values: int) -> StatTest:
    """Evidently's choice from the column kind, the reference size and the distinct values of both samples."""
    small = reference_rows <= SMALL_REFERENCE_ROWS
    if kind is ColumnKind.NUMERIC and distinct_values > FEW_DISTINCT_VALUES:
        return StatTest.KS if small else StatTest.WASSERSTEIN
    if small:
        return StatTest.CHI_SQUARED if distinct_values > 2 else StatTest.Z
    return StatTest.JENSEN_SHANNON


def score(test: StatTest, kind: ColumnKind, reference: npt.NDArray[Any], current: npt.NDArray[Any]) -> float:
    """The test's score; numeric columns come as floats, categorical ones as integer category codes."""
    if test is StatTest.KS:
        return float(stats.ks_2samp(reference, current).pvalue)
    if test is StatTest.WASSERSTEIN:
        return wasserstein_normed(reference, current)
    if test is StatTest.CHI_SQUARED:
        return chi_squared_p_value(reference, current)
    if test is StatTest.Z:
        return z_p_value(reference, current)
    if test is StatTest.JENSEN_SHANNON:
        expected, observed = shares(reference, current, kind, fill_zeros=False)
        return float(distance.jensenshannon(expected, observed))
    expected, observed = shares(reference, current, kind, fill_zeros=True)
    return float(np.sum((expected - observed) * np.log(expected / observed)))


def wasserstein_normed(reference: npt.NDArray[Any], current: npt.NDArray[Any]) -> float:
    """The first Wasserstein distance in units of the reference's standard deviation (at least 0.001)."""
    scale = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, current)) / scale


def wasserstein_of_sorted(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> float:
    """`scipy.stats.wasserstein_distance` of two samples already in ascending order, computed as scipy does
    (the two CDFs at each merged value, weighted by the gap to the next one) with the same result, but
    in linear time: the samples are merged in one pass, and the reference's CDF at a value is the count
    of reference values merged up to it (scipy searches each value in both samples). Within a run of
    equal values the count is short of the run's, but there the gap, hence the term, is 0."""
    both = np.concatenate((reference, current))
    order = np.argsort(both, kind="stable")  # two sorted runs: merged in one pass
    merged = both[order]
    gaps = np.diff(merged)
    from_reference = np.cumsum(order[:-1] < reference.size)
    reference_cdf = from_reference / reference.size
    current_cdf = (np.arange(1, merged.size) - from_reference) / current.size
    return float(np.vecdot(np.abs(reference_cdf - current_cdf), gaps))


def chi_squared_p_value(reference: npt.NDArray[Any], current: npt.NDArray[Any]) -> float:
    """Pearson's test of the current category counts against the reference's, scaled to the current size."""
    expected_counts, observed_counts = category_counts(reference, current)
    expected = expected_counts * (len(current) / len(reference))
    # A category absent from the reference makes an expected count of 0: an infinite statistic, p = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(observed_counts, expected).pvalue)


def z_p_value(reference: npt.NDArray[Any], current: npt.NDArray[Any]) -> float:
    """Two-sided Z-test of the difference of two proportions (a column with two categories)."""
    categories = np.unique(np.concatenate([reference, current]))
    if len(categories) == 1:
        return 1.0
    first = categories[0]
    p_reference = float(np.mean(reference != first))
    p_current = float(np.mean(current != first))
    n_reference, n_current = len(reference), len(current)
    pooled = (p_reference * n_reference + p_current * n_current) / (n_reference + n_current)
    spread = np.sqrt(pooled * (1 - pooled) * (1 / n_reference + 1 / n_current))
    z = (p_reference - p_current) / spread
    return float(2 * stats.norm.sf(abs(z)))
