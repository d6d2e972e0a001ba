"""The latest sampled rows of one deployment and model version, kept as numpy blocks.

Inference sends numbers only (flattened inputs and one prediction per row), in blocks of many rows,
so the window keeps each block as it came instead of a dict per row (`SlidingWindow`, for rows of any
type): adding 1,000 rows is one array copy.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from atelier.errors import InvalidArgument

PREDICTION = "prediction"


class SampleWindow:
    """At most `max_rows` rows, none older than `max_age_seconds`; safe to feed from several threads."""

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        max_rows: int,
        max_age_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_feature_names(feature_names)
        if max_rows < 1:
            raise InvalidArgument(f"max_rows must be at least 1, got {max_rows}")
        self.feature_names = list(feature_names)
        self.max_rows = max_rows
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._blocks: deque[tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]]] = deque()
        self._rows = 0
        self._revision = 0
        self._lock = threading.Lock()

    def add(
        self,
        features: Sequence[float] | npt.NDArray[Any],
        predictions: Sequence[float] | npt.NDArray[Any],
        at: float | None = None,
    ) -> int:
        """Append rows given row-major (`len(feature_names)` values per row) with one prediction each,
        received at `at` on the window's clock (now when None); returns the rows added. Rows with a
        missing or infinite value are refused."""
        block, predicted = checked_rows(self.feature_names, features, predictions)
        return self.extend(block, predicted, at)

    def extend(
        self, block: npt.NDArray[np.float64], predicted: npt.NDArray[np.float64], at: float | None = None
    ) -> int:
        """Append rows that `checked_rows` returned; returns the rows added."""
        block = block[-self.max_rows :]
        predicted = predicted[-self.max_rows :]
        with self._lock:
            stamp = self._clock() if at is None else at
            self._blocks.append((stamp, block, predicted))
            self._rows += len(predicted)
            self._revision += 1
            self._trim()
        return len(predicted)

    def __len__(self) -> int:
        with self._lock:
            self._trim()
            return self._rows

    @property
    def revision(self) -> int:
        """A number that changes whenever rows enter or leave the window: an unchanged revision means
        the same rows, and so the same comparison."""
        with self._lock:
            self._trim()
            return self._revision

    def columns(self) -> dict[str, npt.NDArray[np.float64]]:
        """Every feature column and the prediction column of the rows now in the window."""
        with self._lock:
            self._trim()
            blocks = list(self._blocks)
        if not blocks:
            raise InvalidArgument("the window has no rows yet: nothing to compare with the reference")
        features = np.concatenate([block for _, block, _ in blocks])
        result = {name: features[:, i] for i, name in enumerate(self.feature_names)}
        result[PREDICTION] = np.concatenate([predicted for _, _, predicted in blocks])
        return result

    def _trim(self) -> None:
        rows = self._rows
        self._drop_old()
        if self._rows != rows:
            self._revision += 1

    def _drop_old(self) -> None:
        if self.max_age_seconds is not None:
            oldest_kept = self._clock() - self.max_age_seconds
            while self._blocks and self._blocks[0][0] < oldest_kept:
                self._rows -= len(self._blocks.popleft()[2])
        while self._rows > self.max_rows:
            stamp, block, predicted = self._blocks[0]
            excess = self._rows - self.max_rows
            if excess >= len(predicted):
                self._blocks.popleft()
                self._rows -= len(predicted)
            else:
                self._blocks[0] = (stamp, block[excess:], predicted[excess:])
                self._rows -= excess


def check_feature_names(feature_names: Sequence[str]) -> None:
    """Feature names are distinct, at least one, and none is the prediction column's."""
    if not feature_names or len(set(feature_names)) != len(feature_names) or PREDICTION in feature_names:
        raise InvalidArgument(
            f"feature names must be distinct, at least one, and not {PREDICTION!r}; got {list(feature_names)[:10]}"
        )


def checked_rows(
    feature_names: Sequence[str],
    features: Sequence[float] | npt.NDArray[Any],
    predictions: Sequence[float] | npt.NDArray[Any],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Row-major values as a (rows, features) array and the predictions, both finite float64; a
    block whose sizes do not match or that holds a NaN or an infinity is refused."""
    width = len(feature_names)
    values = np.asarray(features, dtype=np.float64)
    predicted = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if values.size != predicted.size * width:
        raise InvalidArgument(
            f"{values.size} feature values do not make {predicted.size} rows of {width} "
            f"({', '.join(feature_names[:3])}, ...)"
        )
    if not (np.isfinite(values).all() and np.isfinite(predicted).all()):
        raise InvalidArgument("samples must be finite numbers; got a NaN or an infinity")
    return values.reshape(predicted.size, width), predicted
