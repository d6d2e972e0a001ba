"""The demo's real data: scikit-learn's handwritten digits (1,797 8x8 images), written as PNG files.

The layout is `images/<label>/<index:04d>.png` plus `labels.csv` (`file,label`). The values 0..16 are
scaled to 0..255 grayscale. `revise()` makes the small changes the second version holds.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from sklearn.datasets import load_digits

LABELS_FILE = "labels.csv"
README_FILE = "README.md"
REVISED_INDICES = (0, 1, 2, 3, 4)
"""The images the second version re-renders (shifted one pixel to the right)."""
TEST_EVERY = 5
"""Every fifth image goes to the `test` split of the second version's labels."""

Pixels = npt.NDArray[np.uint8]


def load() -> tuple[list[Pixels], list[int]]:
    """The digits as 8x8 grayscale images (0..255) and their labels."""
    digits = load_digits()
    images = [to_grayscale(image) for image in digits.images]
    return images, [int(label) for label in digits.target]


def to_grayscale(image: npt.NDArray[np.float64]) -> Pixels:
    """Scale scikit-learn's 0..16 intensities to 0..255."""
    return np.rint(image * (255 / 16)).astype(np.uint8)


def image_path(index: int, label: int) -> str:
    """Where image `index` lives, relative to the dataset's root."""
    return f"images/{label}/{index:04d}.png"


def write_png(path: Path, pixels: Pixels) -> None:
    """Write one grayscale image as a PNG file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path, format="PNG")


def write_dataset(root: Path) -> int:
    """Write every digit and `labels.csv` under `root`; return the number of files written."""
    images, labels = load()
    rows = []
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        path = image_path(index, label)
        write_png(root / path, pixels)
        rows.append((path, str(label)))
    _write_csv(root / LABELS_FILE, ("file", "label"), rows)
    return len(rows) + 1


def shift_right(pixels: Pixels) -> Pixels:
    """The image moved one pixel to the right, the new left column black."""
    shifted = np.zeros_like(pixels)
    shifted[:, 1:] = pixels[:, :-1]
    return shifted


def revise(root: Path) -> list[str]:
    """The second version: re-render a few images, add a `split` column and a README; return what changed."""
    images, labels = load()
    changed = []
    for index in REVISED_INDICES:
        path = image_path(index, labels[index])
        write_png(root / path, shift_right(images[index]))
        changed.append(path)
    _add_split_column(root / LABELS_FILE)
    (root / README_FILE).write_text(_readme(len(images)), encoding="utf-8")
    return [*changed, LABELS_FILE, README_FILE]


def _add_split_column(path: Path) -> None:
    """Append a `split` column to labels.csv: every TEST_EVERY-th image is `test`, the rest `train`."""
    with path.open(newline="", encoding="utf-8") as source:
        header, *rows = list(csv.reader(source))
    split = [(*row, "test" if i % TEST_EVERY == 0 else "train") for i, row in enumerate(rows)]
    _write_csv(path, (*header, "split"), split)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Write a CSV file with Unix line endings."""
    with path.open("w", newline="", encoding="utf-8") as target:
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _readme(count: int) -> str:
    """The README the second version adds."""
    return (
        "# digits\n\n"
        f"{count} handwritten digits from scikit-learn (`sklearn.datasets.load_digits`), 8x8 pixels,\n"
        "grayscale 0..255, one PNG per image under `images/<label>/`; labels and the train/test split\n"
        f"are in `{LABELS_FILE}`. Images {', '.join(map(str, REVISED_INDICES))} are shifted one pixel right.\n"
    )
