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
from services.monitor.references import LoadedReference, ReferenceLoader, build_reference, pick, subset


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


class FakeVersion:
    def __init__(self, datasets: list[str]) -> None:
        self.lineage = type("Lineage", (), {"datasets": datasets})()


class FakeEntry:
    def __init__(self, path: str, size: int) -> None:
        self.path, self.size_bytes = path, size


class FakeLinks:
    """The registry's and the data service's answers, from a dict of files (what the loader asks of them)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def registry(self) -> FakeLinks:
        return self

    def data(self) -> FakeLinks:
        return self

    def get_version(self, name: str) -> FakeVersion:
        return FakeVersion(["projects/p/datasets/digits/versions/v1"])

    def list_files(self, version: str) -> list[FakeEntry]:
        return [FakeEntry(path, len(content)) for path, content in self.files.items()]

    def read_file(self, version: str, path: str) -> list[bytes]:
        return [self.files[path]]


def png(pixels: np.ndarray) -> bytes:  # type: ignore[type-arg]
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_listed_in_a_csv_are_rows_of_pixels_in_0_to_1() -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (2, 3), dtype=np.uint8) for _ in range(4)]
    files = {f"images/{i}.png": png(image) for i, image in enumerate(images)}
    files["labels.csv"] = b"file,label,split\n" + b"".join(f"images/{i}.png,{i % 2},train\n".encode() for i in range(4))
    loader = ReferenceLoader(FakeLinks(files), max_rows=3, max_file_bytes=1 << 20)  # type: ignore[arg-type]
    loaded = loader.load("projects/p/models/m/versions/v1", [f"input[{i}]" for i in range(6)])
    assert loaded.file == "labels.csv"
    assert loaded.reference.rows == 3
    kept = subset(4, 3)  # the same fixed-seed subset the loader took
    for row, image in enumerate(kept):
        pixels = [loaded.reference.columns[f"input[{j}]"][row] for j in range(6)]
        assert pixels == pytest.approx((images[image].ravel() / 255).tolist())
        assert loaded.reference.columns["prediction"][row] == image % 2
    assert loaded.reference.kinds["prediction"] is ColumnKind.CATEGORICAL
    with pytest.raises(FailedPrecondition, match=r"labels.csv has images of 6 values"):
        loader.load("projects/p/models/m/versions/v1", ["a", "b"])


def test_a_windows_revision_changes_only_when_rows_enter_or_leave() -> None:
    now = [0.0]
    window = SampleWindow(["a"], max_rows=3, max_age_seconds=10, clock=lambda: now[0])
    first = window.revision
    window.add([1, 2], [0, 1])
    added = window.revision
    assert added != first
    now[0] = 5
    assert window.revision == added  # time passing alone changes nothing
    now[0] = 11
    assert window.revision != added  # the rows aged out
    assert len(window) == 0


def test_the_drift_round_compares_again_only_a_window_that_changed() -> None:
    rng = np.random.default_rng(0)
    reference = build_reference(["size"], [rng.normal(0, 1, 300)], None, max_rows=300)
    loader = FixedLoader(LoadedReference("projects/p/datasets/d/versions/v1", "t.csv", reference, ["size"]))
    now = [0.0]
    monitor = DriftMonitor(loader, WindowSettings(max_rows=200, max_age_seconds=10, min_rows=50), clock=lambda: now[0])
    deployment, version = "projects/p/deployments/d", "projects/p/models/m/versions/v1"
    monitor.record(deployment, version, ["x[0]"], rng.normal(0, 1, 100), np.zeros(100))
    monitor.refresh()
    [first] = monitor.reports()
    monitor.refresh()
    assert monitor.reports() == [first]  # the same rows: the report of the round before stands
    now[0] = 6
    monitor.record(deployment, version, ["x[0]"], rng.normal(3, 1, 100), np.zeros(100))
    monitor.refresh()
    [shifted] = monitor.reports()
    assert shifted is not first
    assert shifted.window_rows == 200
    assert shifted.report.features.drifted
    now[0] = 12  # the first block ages out
    monitor.refresh()
    [aged] = monitor.reports()
    assert aged is not shifted
    assert aged.window_rows == 100
