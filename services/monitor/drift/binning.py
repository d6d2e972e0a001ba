"""Shares of a sample per bin or category, the way Evidently bins for Jensen-Shannon and PSI."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from services.monitor.drift.kinds import ColumnKind

# A numeric reference with more distinct values than this is binned into a histogram; else per value.
HISTOGRAM_ABOVE_DISTINCT = 20


def category_counts(
    reference: npt.NDArray[Any], current: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Counts of each value seen in either sample, in the same order for both."""
    values = np.unique(np.concatenate([reference, current]))
    reference_counts = np.searchsorted(values, reference)
    current_counts = np.searchsorted(values, current)
    return (
        np.bincount(reference_counts, minlength=len(values)).astype(np.float64),
        np.bincount(current_counts, minlength=len(values)).astype(np.float64),
    )


def shares(
    reference: npt.NDArray[Any], current: npt.NDArray[Any], kind: ColumnKind, *, fill_zeros: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each sample's share per bin: Sturges histogram bins over both samples for a many-valued numeric
    reference, one bin per value otherwise. With `fill_zeros` (PSI, which takes logarithms) an empty
    bin gets a tiny share instead of 0."""
    if kind is ColumnKind.NUMERIC and len(np.unique(reference)) > HISTOGRAM_ABOVE_DISTINCT:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        reference_counts = np.histogram(reference, edges)[0].astype(np.float64)
        current_counts = np.histogram(current, edges)[0].astype(np.float64)
    else:
        reference_counts, current_counts = category_counts(reference, current)
    reference_shares = reference_counts / len(reference)
    current_shares = current_counts / len(current)
    if fill_zeros:
        return _filled(reference_shares), _filled(current_shares)
    return reference_shares, current_shares


def _filled(shares: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Evidently's rule: empty bins get 0.0001, or a millionth of the smallest share when that is smaller.
    smallest = float(shares[shares > 0].min())
    filler = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(shares == 0, filler, shares)
