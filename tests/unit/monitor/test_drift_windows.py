"""The monitor's side of drift without services: reference files, windows of samples, and reports."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pytest

from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from services.monitor.drift import ColumnKind, StatTest, column_drift
from services.monitor.drift.files import read_table
from services.monitor.drift.samples import SampleWindow
from services.monitor.drifts import DriftMonitor, WindowSettings
from services.monitor.references import LoadedReference, ReferenceLoader, build_reference, pick


def npy(array: np.ndarray) -> bytes:  # type: ignore[type-arg]
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_csv_gives_feature_names_and_its_label_column() -> None:
    table = read_table("train.csv", b"petal,sepal,Label\n1.5,2,0\n2.5,3,1\n3.0,4,2\n")
    assert table.names == ["petal", "sepal"]
    assert table.features[0].dtype == np.float64
    assert table.features[1].dtype == np.int64  # whole numbers are read as integers, as pandas would
    assert table.labels is not None
    assert table.labels.tolist() == [0, 1, 2]


def test_a_csv_value_that_is_not_a_number_is_named() -> None:
    with pytest.raises(FailedPrecondition, match=r"train.csv:3 has a value that is not a number: \['x', '1'\]"):
        read_table("train.csv", b"a,label\n1,0\nx,1\n")


def test_npy_rows_are_flattened_and_a_one_column_array_is_labels() -> None:
    images = read_table("x.npy", npy(np.zeros((5, 2, 3), np.uint8)))
    assert len(images.features) == 6
    assert images.rows == 5
    labels = read_table("y.npy", npy(np.arange(5)))
    tables = [("x.npy", images), ("y.npy", labels)]
    path, features, found = pick(tables, 6, [])  # type: ignore[misc]
    assert path == "x.npy"
    assert found is not None
    assert found.tolist() == [0, 1, 2, 3, 4]
    problems: list[str] = []
    assert pick(tables, 7, problems) is None
    assert problems == ["x.npy has rows of 6 values", "y.npy has rows of 1 values"]


def test_a_window_keeps_the_latest_rows_within_its_age() -> None:
    now = [0.0]
    window = SampleWindow(["a", "b"], max_rows=5, max_age_seconds=10, clock=lambda: now[0])
    window.add([1, 1, 2, 2, 3, 3], [0, 1, 0])
    now[0] = 5
    window.add([4, 4, 5, 5, 6, 6, 7, 7], [1, 0, 1, 0])
    assert window.columns()["a"].tolist() == [3, 4, 5, 6, 7]
    assert window.columns()["prediction"].tolist() == [0, 1, 0, 1, 0]
    now[0] = 12
    assert len(window) == 4  # the first block aged out
    with pytest.raises(InvalidArgument, match="5 feature values do not make 2 rows of 2"):
        window.add([1, 2, 3, 4, 5], [0, 1])
    with pytest.raises(InvalidArgument, match="NaN"):
        window.add([1, float("nan")], [0])


class FixedLoader(ReferenceLoader):
    def __init__(self, loaded: LoadedReference) -> None:
        self.loaded = loaded
        self.calls = 0

    def load(self, model_version: str, feature_names: Sequence[str]) -> LoadedReference:
        self.calls += 1
        return self.loaded


def test_float_samples_of_an_integer_category_are_that_category() -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 3, 400)
    size = rng.normal(0, 1, 400)
    reference = build_reference(["colour", "size"], [colour, size], rng.integers(0, 2, 400), max_rows=300)
    assert reference.rows == 300
    assert reference.kinds == {
        "colour": ColumnKind.CATEGORICAL,
        "size": ColumnKind.NUMERIC,
        "prediction": ColumnKind.CATEGORICAL,
    }
    loader = FixedLoader(LoadedReference("projects/p/datasets/d/versions/v1", "t.csv", reference, ["colour", "size"]))
    monitor = DriftMonitor(loader, WindowSettings(max_rows=200, min_rows=50))
    deployment, version = "projects/p/deployments/d", "projects/p/models/m/versions/v1"
    with pytest.raises(NotFound, match="no drift samples received for projects/p/deployments/d"):
        monitor.report(deployment)
    rows = np.stack([rng.integers(0, 3, 200).astype(np.float64), rng.normal(0, 1, 200)], axis=1)
    monitor.record(deployment, version, ["x[0]", "x[1]"], rows.ravel().tolist(), rng.integers(0, 2, 200).tolist())
    result = monitor.report(deployment)
    colour_drift = result.report.features.columns[0]
    assert colour_drift.column == "colour"
    assert colour_drift.test is StatTest.CHI_SQUARED  # three categories, not six (0 and 0.0 are one)
    as_integers = column_drift("colour", ColumnKind.CATEGORICAL, reference.columns["colour"], rows[:, 0].astype(int))
    assert colour_drift.score == as_integers.score
    assert result.labels == {"project": "p", "deployment": "d", "model": "m", "version": "1"}
    monitor.report(deployment)
    assert loader.calls == 1  # the reference is built once per model version
