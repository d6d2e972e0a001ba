"""Sampled rows of one model version: each request's values appended as bytes when offered, turned into
float64 arrays when sent.

Holding each sampled request's own arrays and output objects until the sender took them (a second's
worth, about 1,000 requests' small objects spread over the heap) cost the serving loop more than copying
a row's values does. Copying them as bytes (`tobytes`, then one append per input and one for the
output) is the cheapest copy: about 0.3 us for a 64-value row, where writing it into a float64 array
(a cast per input, and the output read with `frombuffer`) took about 2 us. The conversion to float64
happens once per send, for all rows at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from services.inference.repository import Served


class SampledRows:
    """Rows of one served model version with a fixed layout (each input's datatype and values per row,
    and the first output's bytes per row): the inputs' values side by side, and the first output's values
    (from which the predictions are taken when sent)."""

    def __init__(self, served: Served, inputs: Sequence[npt.NDArray[Any]], output: bytes, output_dtype: Any, rows: int):
        self.served = served
        self.input_dtypes = tuple(array.dtype for array in inputs)
        self.input_widths = widths(inputs, rows)
        self.output_dtype = np.dtype(output_dtype)
        self.output_width = len(output) // (self.output_dtype.itemsize * rows)
        self._output_row_bytes = self.output_width * self.output_dtype.itemsize
        self._inputs = [bytearray() for _ in inputs]
        self._output = bytearray()
        self.count = 0
        self._converted: tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None

    def fits(self, inputs: Sequence[npt.NDArray[Any]], output: bytes, rows: int) -> bool:
        """Whether a request's rows have this layout."""
        if len(output) != rows * self._output_row_bytes or len(inputs) != len(self.input_widths):
            return False
        for index, array in enumerate(inputs):  # on the request path: no zip (measurably dearer)
            if array.dtype != self.input_dtypes[index] or array.size != rows * self.input_widths[index]:
                return False
        return True

    def append(self, inputs: Sequence[npt.NDArray[Any]], output: bytes, rows: int) -> None:
        """Copy a request's rows (which `fits`)."""
        for index, array in enumerate(inputs):
            self._inputs[index] += array.tobytes()  # in C order, whatever the array's layout
        self._output += output
        self.count += rows

    def features(self, start: int, end: int) -> npt.NDArray[np.float64]:
        """Rows `start` to `end`: each input's values flattened, side by side, as float64."""
        return self._arrays()[0][start:end]

    def predictions(self, start: int, end: int) -> npt.NDArray[np.float64]:
        """The first output per row when it is one value, else the index of the row's largest value."""
        values = self._arrays()[1][start:end]
        chosen = values[:, 0] if self.output_width == 1 else np.argmax(values, axis=1)
        return np.asarray(chosen, dtype=np.float64)

    def _arrays(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """All rows as (features, outputs), converted once for the rows there are."""
        if self._converted is None or self._converted[0] != self.count:
            features = np.empty((self.count, sum(self.input_widths)), np.float64)
            column = 0
            for buffer, dtype, width in zip(self._inputs, self.input_dtypes, self.input_widths, strict=True):
                features[:, column : column + width] = np.frombuffer(buffer, dtype).reshape(self.count, width)
                column += width
            outputs = np.frombuffer(self._output, self.output_dtype).reshape(self.count, self.output_width)
            self._converted = (self.count, features, outputs.astype(np.float64))
        return self._converted[1], self._converted[2]


def widths(inputs: Sequence[npt.NDArray[Any]], rows: int) -> tuple[int, ...]:
    """Values per row of each input."""
    return tuple(a.size // rows for a in inputs)
