"""Reference rows from the files of a training dataset version: `.npy` arrays, `.csv` tables, and images
listed in a `.csv`.

A deployment's samples arrive as rows of `F` numbers (the model's inputs, flattened and concatenated)
and one prediction. The reference must hold rows of the same `F` values:

- `.npy`: an array of shape `(N, ...)` whose rows flatten to `F` values is the features; an array of
  `N` rows of one value each (shape `(N,)` or `(N, 1)`) is the labels, the reference of the
  predictions. Features are named as the samples name them (`input[0]`, ...).
- `.csv` with a header: a column named `label`, `target`, `y` or `prediction` (any case) is the labels;
  the other `F` columns, in order, are the features and give the report its column names. Every value
  must be a number.
- `.csv` with a column named `file`, `path`, `image` or `filename` whose values are image paths
  (`.png`, `.jpg`, `.jpeg`, relative to the dataset's root): each image is a row, its pixels scaled to
  0..1 and flattened channels first (what torchvision's `ToTensor` gives a model), the label column
  its label; other columns are ignored.

No pandas: numpy and the csv module read the tables, Pillow the images.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from atelier.errors import FailedPrecondition

SUFFIXES = (".npy", ".csv")
LABEL_COLUMNS = ("label", "target", "y", "prediction")
IMAGE_COLUMNS = ("file", "path", "image", "filename")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Table:
    """Rows read from one file: feature columns (`F` arrays of `N` values), their names when the file
    gives them, and labels (`N` values)."""

    features: list[npt.NDArray[Any]]
    names: list[str] | None = None
    labels: npt.NDArray[Any] | None = None
    images: list[str] | None = None
    """Image paths, one per row, when the features are images still to read."""
    image_width: int = 0
    """Values per image (of the first one), once known."""

    @property
    def width(self) -> int:
        """Feature values per row."""
        return self.image_width if self.images is not None else len(self.features)

    @property
    def rows(self) -> int:
        if self.images is not None:
            return len(self.images)
        found = self.features[0] if self.features else self.labels
        return 0 if found is None else len(found)


def read_table(path: str, content: bytes) -> Table:
    """The features and/or labels a `.npy` or `.csv` file holds; a clear error for anything else."""
    if path.endswith(".npy"):
        return _npy(path, content)
    if path.endswith(".csv"):
        return _csv(path, content)
    raise FailedPrecondition(f"reference file {path!r} is neither .npy nor .csv")


def _npy(path: str, content: bytes) -> Table:
    try:
        array = np.load(io.BytesIO(content), allow_pickle=False)
    except ValueError as error:
        raise FailedPrecondition(f"reference file {path!r} is not a numpy array without objects: {error}") from None
    if array.ndim == 0 or len(array) == 0 or array.dtype.kind not in "biuf":
        raise FailedPrecondition(
            f"reference file {path!r} holds a {array.dtype} array of shape {array.shape}; "
            "a non-empty array of numbers with one row per sample is needed"
        )
    rows = array.reshape(len(array), -1)
    columns = list(rows.T)
    return Table(features=columns, labels=columns[0] if len(columns) == 1 else None)


def _csv(path: str, content: bytes) -> Table:
    reader = csv.reader(io.StringIO(content.decode("utf-8-sig")))
    header = next(reader, None)
    if not header:
        raise FailedPrecondition(f"reference file {path!r} is empty; a header row and rows of numbers are needed")
    names = [name.strip() for name in header]
    label_at = next((i for i, name in enumerate(names) if name.lower() in LABEL_COLUMNS), None)
    image_at = next((i for i, name in enumerate(names) if name.lower() in IMAGE_COLUMNS), None)
    if image_at is not None:
        return _image_list(path, [row for row in reader if row], image_at, label_at)
    values: list[list[float]] = []
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(names):
            raise FailedPrecondition(f"{path}:{number} has {len(row)} values; the header names {len(names)} columns")
        try:
            values.append([float(value) for value in row])
        except ValueError:
            raise FailedPrecondition(f"{path}:{number} has a value that is not a number: {row}") from None
    if not values:
        raise FailedPrecondition(f"reference file {path!r} has a header but no rows")
    table = np.array(values)
    feature_at = [i for i in range(len(names)) if i != label_at]
    return Table(
        features=[_narrowed(table[:, i]) for i in feature_at],
        names=[names[i] for i in feature_at],
        labels=None if label_at is None else _narrowed(table[:, label_at]),
    )


def _image_list(path: str, rows: list[list[str]], image_at: int, label_at: int | None) -> Table:
    images = [row[image_at].strip() if image_at < len(row) else "" for row in rows]
    if not images:
        raise FailedPrecondition(f"reference file {path!r} has a header but no rows")
    for number, image in enumerate(images, start=2):
        if not image.lower().endswith(IMAGE_SUFFIXES):
            raise FailedPrecondition(
                f"{path}:{number} names {image!r} in its image column; allowed: {', '.join(IMAGE_SUFFIXES)} files"
            )
    labels = None
    if label_at is not None:
        try:
            labels = _narrowed(np.array([float(row[label_at]) for row in rows]))
        except (ValueError, IndexError):
            raise FailedPrecondition(f"{path}: the label column has a value that is not a number") from None
    return Table(features=[], labels=labels, images=images)


def image_values(path: str, content: bytes) -> npt.NDArray[np.float32]:
    """An image's pixels in 0..1, channels first, flattened (grayscale stays one channel)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            converted = image if image.mode in ("L", "RGB") else image.convert("RGB")
            pixels = np.asarray(converted, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise FailedPrecondition(f"reference image {path!r} cannot be read: {error}") from None
    if pixels.ndim == 3:
        pixels = pixels.transpose(2, 0, 1)
    return pixels.ravel()


def _narrowed(column: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """A column of whole numbers as integers, as pandas reads it, so that its kind is inferred as
    Evidently infers it (a class column is categorical)."""
    if np.all(np.mod(column, 1) == 0) and np.all(np.abs(column) < 2**53):
        return column.astype(np.int64)
    return column
