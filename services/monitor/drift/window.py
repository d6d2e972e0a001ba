"""A bounded sliding window of the latest rows a deployment saw: the last N rows within the last T seconds."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy.typing as npt

from atelier.errors import InvalidArgument
from services.monitor.drift.reference import column_array, rows_to_columns


class SlidingWindow:
    """Rows with fixed columns, at most `max_rows` of them, none older than `max_age_seconds` (if given).

    Safe to feed from several threads; `columns()` returns the current window as arrays for `compare()`.
    """

    def __init__(
        self,
        columns: Sequence[str],
        *,
        max_rows: int,
        max_age_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not columns or len(set(columns)) != len(columns):
            raise InvalidArgument(f"a window needs distinct column names, got {list(columns)}")
        if max_rows < 1:
            raise InvalidArgument(f"max_rows must be at least 1, got {max_rows}")
        if max_age_seconds is not None and max_age_seconds <= 0:
            raise InvalidArgument(f"max_age_seconds must be above 0 when given, got {max_age_seconds}")
        self.column_names = list(columns)
        self.max_rows = max_rows
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._rows: deque[tuple[float, Mapping[str, Any]]] = deque(maxlen=max_rows)
        self._lock = threading.Lock()

    def add(self, row: Mapping[str, Any]) -> None:
        """Append a row with exactly the window's columns, dropping the oldest beyond `max_rows`."""
        if row.keys() != set(self.column_names):
            missing = sorted(set(self.column_names) - row.keys())
            extra = sorted(row.keys() - set(self.column_names))
            raise InvalidArgument(
                f"row does not have the window's columns: missing {missing}, unexpected {extra} "
                f"(expected: {', '.join(self.column_names)})"
            )
        for name, value in row.items():
            if value is None or (isinstance(value, float) and value != value):
                raise InvalidArgument(f"column {name!r} has a missing value ({value}); every row needs a value")
        with self._lock:
            self._rows.append((self._clock(), dict(row)))

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._rows)

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """The rows now in the window, column by column; an error when the window is empty."""
        with self._lock:
            self._expire()
            rows = [row for _, row in self._rows]
        if not rows:
            raise InvalidArgument("the window has no rows yet: nothing to compare with the reference")
        table = rows_to_columns(rows, self.column_names)
        return {name: column_array(name, values) for name, values in table.items()}

    def _expire(self) -> None:
        if self.max_age_seconds is None:
            return
        oldest_kept = self._clock() - self.max_age_seconds
        while self._rows and self._rows[0][0] < oldest_kept:
            self._rows.popleft()
