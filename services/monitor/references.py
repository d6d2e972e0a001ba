"""The reference of a model version: rows of the training dataset version named in its lineage.

The monitor asks the registry for the version's lineage and reads the dataset version's `.npy` and
`.csv` files (and the images a `.csv` lists) through the data service, both by their public clients, in
path order, until it has the features (and labels, the reference of the predictions); see
`drift/files.py` for the formats.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from atelier.client.links import Links
from atelier.errors import FailedPrecondition
from services.monitor.drift import ColumnKind, Reference
from services.monitor.drift.files import SUFFIXES, Table, image_values, read_table
from services.monitor.drift.samples import PREDICTION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedReference:
    """A reference and where it came from; `names` are its feature columns in the samples' order."""

    dataset_version: str
    file: str
    reference: Reference
    names: list[str]


class ReferenceLoader:
    """Builds references from lineage; at most `max_rows` rows (an even random subset, fixed seed)."""

    def __init__(self, links: Links, max_rows: int, max_file_bytes: int) -> None:
        self.links = links
        self.max_rows = max_rows
        self.max_file_bytes = max_file_bytes

    def load(self, model_version: str, feature_names: Sequence[str]) -> LoadedReference:
        lineage = self.links.registry().get_version(model_version).lineage
        if not lineage.datasets:
            raise FailedPrecondition(
                f"model version {model_version} names no training dataset version in its lineage; drift needs "
                "one (log the model from a run whose inputs include the dataset)"
            )
        problems: list[str] = []
        for dataset_version in lineage.datasets:
            tables = self._tables(dataset_version, problems)
            found = pick(tables, len(feature_names), problems)
            if found is not None:
                path, features, labels = found
                names = features.names or list(feature_names)
                columns = features.features
                if features.images is not None:
                    keep = subset(features.rows, self.max_rows)
                    columns = self._images(dataset_version, [features.images[i] for i in keep])
                    labels = None if labels is None else labels[keep]
                reference = build_reference(names, columns, labels, self.max_rows)
                log.info("drift reference of %s: %s %s, %d rows", model_version, dataset_version, path, reference.rows)
                return LoadedReference(dataset_version, path, reference, names)
        raise FailedPrecondition(
            f"no reference for {model_version}: its training data ({', '.join(lineage.datasets)}) has no .npy or "
            f".csv file with rows of {len(feature_names)} values, the model's inputs "
            f"({', '.join(feature_names[:3])}, ...) flattened; {'; '.join(problems) or 'no such file'}"
        )

    def _tables(self, dataset_version: str, problems: list[str]) -> list[tuple[str, Table]]:
        data = self.links.data()
        tables = []
        for entry in sorted(data.list_files(dataset_version), key=lambda e: e.path):
            if not entry.path.endswith(SUFFIXES):
                continue
            if entry.size_bytes > self.max_file_bytes:
                limit = f"{self.max_file_bytes} bytes (ATELIER_MONITOR_DRIFT_MAX_FILE_BYTES)"
                problems.append(f"{entry.path} is over {limit}")
                continue
            content = b"".join(data.read_file(dataset_version, entry.path))
            try:
                table = read_table(entry.path, content)
                if table.images is not None:
                    first = b"".join(data.read_file(dataset_version, table.images[0]))
                    table = replace(table, image_width=len(image_values(table.images[0], first)))
                tables.append((entry.path, table))
            except FailedPrecondition as error:
                problems.append(str(error))
        return tables

    def _images(self, dataset_version: str, paths: list[str]) -> list[npt.NDArray[Any]]:
        """The images' values as feature columns; every image must have as many values as the first."""
        data = self.links.data()
        rows: list[npt.NDArray[np.float32]] = []
        for path in paths:
            values = image_values(path, b"".join(data.read_file(dataset_version, path)))
            if rows and len(values) != len(rows[0]):
                raise FailedPrecondition(
                    f"reference image {path} has {len(values)} values; {paths[0]} has {len(rows[0])}: "
                    "every image of a reference must have the same size and channels"
                )
            rows.append(values)
        return list(np.stack(rows).T)


def pick(
    tables: list[tuple[str, Table]], width: int, problems: list[str]
) -> tuple[str, Table, npt.NDArray[Any] | None] | None:
    """The first table with `width` feature columns, and labels: its own, else the first other file's
    labels with as many rows."""
    for path, table in tables:
        if table.width != width:
            what = "images" if table.images is not None else "rows"
            problems.append(f"{path} has {what} of {table.width} values")
            continue
        # A .npy's one column is its feature, not its label.
        labels = table.labels if table.names is not None or table.images is not None else None
        if labels is None:
            labels = next(
                (t.labels for p, t in tables if p != path and t.labels is not None and t.rows == table.rows), None
            )
        return path, table, labels
    return None


def build_reference(
    names: Sequence[str], features: Sequence[npt.NDArray[Any]], labels: npt.NDArray[Any] | None, max_rows: int
) -> Reference:
    """The reference columns, kinds inferred as Evidently infers them, subsampled to `max_rows`."""
    keep = subset(len(features[0]), max_rows)
    columns = {name: np.asarray(column)[keep] for name, column in zip(names, features, strict=True)}
    if labels is not None:
        columns[PREDICTION] = np.asarray(labels)[keep]
    return Reference.from_columns(columns, prediction=PREDICTION if labels is not None else None)


def subset(rows: int, max_rows: int) -> npt.NDArray[np.int64]:
    """Every row index, or a fixed-seed random `max_rows` of them in order."""
    if rows <= max_rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(0).choice(rows, max_rows, replace=False))


def as_reference_types(reference: Reference, current: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """Samples travel as floats: categorical columns whose reference holds integers or booleans get the
    reference's type, so that 3.0 and 3 are the same category."""
    converted = {}
    for name, values in current.items():
        expected = reference.columns[name].dtype
        if reference.kinds[name] is ColumnKind.CATEGORICAL and expected.kind in "iub":
            values = np.rint(values).astype(expected)
        converted[name] = values
    return converted
