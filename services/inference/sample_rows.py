"""Sampled rows of one model version, copied when a request is offered into arrays that grow by doubling.

Holding each sampled request's own arrays and output objects until the sender took them (a second's
worth, about 1,000 requests' small objects spread over the heap) cost the serving loop more than copying
a row's values does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from services.inference.repository import Served

INITIAL_ROWS = 256


class SampledRows:
    """Rows of one served model version with fixed widths: the inputs' values side by side, and the
    first output's values (from which the predictions are taken when sent)."""

    def __init__(self, served: Served, input_widths: tuple[int, ...], output_width: int, output_dtype: Any) -> None:
        self.served = served
        self.input_widths = input_widths
        self.output_width = output_width
        self.output_dtype = np.dtype(output_dtype)
        self.features = np.empty((INITIAL_ROWS, sum(input_widths)), np.float64)
        self.outputs = np.empty((INITIAL_ROWS, output_width), np.float64)
        self.count = 0

    def append(self, inputs: Sequence[npt.NDArray[Any]], output: bytes, rows: int) -> None:
        end = self.count + rows
        if end > len(self.features):
            self._grow(end)
        column = 0
        for array, width in zip(inputs, self.input_widths, strict=True):
            self.features[self.count : end, column : column + width] = array.reshape(rows, width)
            column += width
        self.outputs[self.count : end] = np.frombuffer(output, self.output_dtype).reshape(rows, self.output_width)
        self.count = end

    def predictions(self, start: int, end: int) -> npt.NDArray[np.float64]:
        """The first output per row when it is one value, else the index of the row's largest value."""
        values = self.outputs[start:end]
        chosen = values[:, 0] if self.output_width == 1 else np.argmax(values, axis=1)
        return np.asarray(chosen, dtype=np.float64)

    def _grow(self, rows: int) -> None:
        capacity = max(rows, 2 * len(self.features))
        features = np.empty((capacity, self.features.shape[1]), np.float64)
        outputs = np.empty((capacity, self.output_width), np.float64)
        features[: self.count] = self.features[: self.count]
        outputs[: self.count] = self.outputs[: self.count]
        self.features, self.outputs = features, outputs


def widths(inputs: Sequence[npt.NDArray[Any]], rows: int) -> tuple[int, ...]:
    """Values per row of each input."""
    return tuple(a.size // rows for a in inputs)
