"""Drift windows outlive the monitor: samples are stored before they are acknowledged, a new monitor on the
same database has the same windows and the same report without new traffic, old blocks are pruned, and a
refused call stores nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from atelier.client.monitor import MonitorClient
from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from atelier.monitor.v1 import monitor_service_pb2 as pb
from atelier.runtime.database import create_engine, migrate
from atelier.stack.addresses import address_file, read_address_file
from services.monitor.sample_store import SampleBlock, SampleStore
from tests.conftest import ServerThread

pytestmark = pytest.mark.timeout(240)
DEPLOYMENT = "projects/lab/deployments/blobs"
VERSION = "projects/lab/models/blobs/versions/v1"
NAMES = [f"input[{i}]" for i in range(4)]
WINDOW = 300


class Monitor:
    """A monitor in-process that can be stopped and built again on the same database."""

    def __init__(self, tmp_path: Path, database_url: str, **settings: Any) -> None:
        self.home, self.database_url, self.settings = tmp_path / "home", database_url, settings
        self.thread: ServerThread | None = None
        self.client: MonitorClient | None = None

    def start(self) -> MonitorClient:
        from services.monitor.server import build
        from services.monitor.settings import MonitorSettings

        settings = MonitorSettings(home=self.home, database_url=self.database_url, **self.settings)
        self.thread = ServerThread(lambda: build(settings))
        self.client = MonitorClient.at(self.thread.start())
        return self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.thread is not None:
            self.thread.stop()
        self.client = self.thread = None


@pytest.fixture
def monitors(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Monitor]]:
    made: list[Monitor] = []

    def make(**settings: Any) -> Monitor:
        made.append(Monitor(tmp_path, database_url, **settings))
        return made[-1]

    yield make
    for monitor in made:
        monitor.stop()


def store_of(database_url: str) -> SampleStore:
    from services.monitor.server import MIGRATIONS

    engine = create_engine(database_url)
    migrate(engine, MIGRATIONS, "alembic_version_monitor")
    return SampleStore(engine)


def blobs(rows: int, shift: float, seed: int) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    columns = [rng.normal(0, 1, rows), rng.normal(2, 0.5, rows), rng.exponential(1, rows), rng.uniform(-1, 1, rows)]
    return np.stack(columns, axis=1) + shift


def samples(rows: npt.NDArray[np.float64], deployment: str = DEPLOYMENT, names: list[str] = NAMES) -> pb.DriftSamples:
    predictions = (rows[:, 0] > 0).astype(np.float64)
    return pb.DriftSamples(
        deployment=deployment,
        model_version=VERSION,
        feature_names=names,
        features=rows.ravel().tolist(),
        predictions=predictions.tolist(),
    )


def block(deployment: str, rows: int, received: datetime, first: float = 0.0) -> SampleBlock:
    values = np.arange(first, first + rows * 4, dtype=np.float64).reshape(rows, 4)
    return SampleBlock(deployment, VERSION, NAMES, values, np.zeros(rows), received)


@pytest.fixture
def registry_with_model(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """Data and registry in-process, holding model `blobs` v1 trained on dataset `blobs` v1 (its lineage)."""
    import torch

    import atelier
    from atelier.client import DataClient
    from atelier.datasets.push import push
    from atelier.names import parse_dataset_ref
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings

    home = tmp_path / "services"
    data = serve(lambda: build_data(DataSettings(home=home)))
    registry = serve(lambda: build_registry(RegistrySettings(home=home, data_address=data)))
    monkeypatch.setenv("ATELIER_DATA_ADDRESS", data)
    monkeypatch.setenv("ATELIER_REGISTRY_ADDRESS", registry)
    monkeypatch.setenv("ATELIER_PROJECT", "lab")
    source = tmp_path / "blobs"
    source.mkdir()
    features = blobs(600, 0.0, seed=1).astype(np.float32)
    np.save(source / "features.npy", features)
    np.save(source / "labels.npy", (features[:, 0] > 0).astype(np.int64))
    client = DataClient.at(data)
    push(client, source, parse_dataset_ref("blobs", "lab"))
    client.close()
    with atelier.start_run(experiment="blobs", inputs=["blobs@v1"], capture_code=False) as run:
        run.log_model(torch.nn.Linear(4, 2).eval(), torch.zeros(2, 4), name="blobs")
    return data, registry


def test_a_new_monitor_on_the_same_database_gives_the_same_report(
    monitors: Callable[..., Monitor], registry_with_model: tuple[str, str], database_url: str
) -> None:
    data, registry = registry_with_model
    settings = {"data_address": data, "registry_address": registry, "drift_window_rows": WINDOW}
    first = monitors(**settings)
    client = first.start()
    for seed in range(3):  # 450 rows in three calls: the window holds the last 300
        assert client.write_drift_samples([samples(blobs(150, 0.8, seed=10 + seed))]) == 150
    before = client.drift_report(DEPLOYMENT)
    assert before.window_rows == WINDOW
    assert before.dataset_drift
    first.stop()

    second = monitors(**settings, drift_interval_seconds=0.2, address_file=address_file(first.home, "monitor"))
    again = second.start()
    # The drift round publishes the restored window's report without new samples.
    assert window_rows(second.home) == WINDOW
    after = again.drift_report(DEPLOYMENT)
    after.ClearField("compute_time")
    before.ClearField("compute_time")
    assert after == before
    # Restoring pruned the block no window needs any more (the newest two hold 300 rows).
    assert [len(b.predictions) for b in store_of(database_url).blocks_since(None)] == [150, 150]


def window_rows(home: Path) -> float:
    """`atelier_monitor_drift_window_rows` of the deployment, once the monitor publishes it."""
    published = read_address_file(address_file(home, "monitor"))
    assert published is not None
    series = 'atelier_monitor_drift_window_rows{deployment="blobs",model="blobs",project="lab",version="1"}'
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(f"http://{published.metrics}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(series + " "):
                    return float(line.rpartition(" ")[2])
        assert time.monotonic() < deadline, f"the monitor published no {series}"
        time.sleep(0.2)


def test_an_acknowledged_write_is_in_the_database(monitors: Callable[..., Monitor], database_url: str) -> None:
    client = monitors().start()
    rows = blobs(7, 0.0, seed=2)
    assert client.write_drift_samples([samples(rows), samples(rows[:3], "projects/lab/deployments/other")]) == 10
    # Read by another connection pool, as a monitor started after a crash would.
    stored = list(store_of(database_url).blocks_since(None))
    assert [(b.deployment, b.model_version, b.feature_names) for b in stored] == [
        (DEPLOYMENT, VERSION, NAMES),
        ("projects/lab/deployments/other", VERSION, NAMES),
    ]
    np.testing.assert_array_equal(stored[0].features, rows)
    np.testing.assert_array_equal(stored[0].predictions, (rows[:, 0] > 0).astype(np.float64))
    assert abs(stored[0].receive_time - datetime.now(UTC)) < timedelta(minutes=5)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (pb.DriftSamples(deployment="lab/blobs", model_version=VERSION, feature_names=NAMES), "deployment"),
        (samples(blobs(2, 0.0, 3), names=["a", "a", "b", "c"]), "feature names must be distinct"),
        (pb.DriftSamples(deployment=DEPLOYMENT, model_version=VERSION, feature_names=NAMES, features=[1.0] * 5,
                         predictions=[0.0]), "5 feature values do not make 1 rows of 4"),
        (pb.DriftSamples(deployment=DEPLOYMENT, model_version=VERSION, feature_names=NAMES,
                         features=[1.0, 2.0, float("nan"), 4.0], predictions=[0.0]), "NaN"),
    ],
)  # fmt: skip
def test_a_refused_call_stores_nothing(
    monitors: Callable[..., Monitor], database_url: str, bad: pb.DriftSamples, message: str
) -> None:
    client = monitors().start()
    with pytest.raises(InvalidArgument, match=message):
        client.write_drift_samples([samples(blobs(5, 0.0, seed=4)), bad])
    assert list(store_of(database_url).blocks_since(None)) == []
    with pytest.raises(NotFound, match="no drift samples received"):
        client.drift_report(DEPLOYMENT)


def test_blocks_are_pruned_by_age_and_by_rows(database_url: str) -> None:
    store = store_of(database_url)
    now = datetime.now(UTC)
    a, b = DEPLOYMENT, "projects/lab/deployments/other"
    store.append([block(a, 100, now - timedelta(hours=2))])  # too old
    store.append([block(a, 100, now - timedelta(minutes=30), first=1), block(b, 250, now - timedelta(minutes=20))])
    store.append([block(a, 120, now - timedelta(minutes=10), first=2)])
    store.append([block(a, 90, now - timedelta(minutes=5), first=3), block(b, 50, now)])
    assert store.prune(now, 3600.0, max_rows=200) == 2
    kept = [(s.deployment, len(s.predictions), s.features[0, 0]) for s in store.blocks_since(None)]
    # a: 90 + 120 rows hold 200, so the 100-row block behind them goes; b: 50 + 250 need both.
    assert kept == [(b, 250, 0.0), (a, 120, 2.0), (a, 90, 3.0), (b, 50, 0.0)]
    assert store.prune(now, 3600.0, max_rows=200) == 0
    assert store.prune(now + timedelta(minutes=52), 3600.0, max_rows=200) == 2  # b's 250 and a's 120 aged out
    assert [len(s.predictions) for s in store.blocks_since(None)] == [90, 50]


def test_a_restarted_monitor_keeps_only_young_blocks(monitors: Callable[..., Monitor], database_url: str) -> None:
    store = store_of(database_url)
    now = datetime.now(UTC)
    old, young = "projects/lab/deployments/old", DEPLOYMENT
    store.append([block(old, 150, now - timedelta(minutes=61)), block(young, 40, now - timedelta(minutes=59))])
    store.append([block(young, 30, now - timedelta(minutes=1))])
    client = monitors(drift_window_seconds=3600.0, drift_min_rows=100).start()
    with pytest.raises(NotFound, match="no drift samples received for projects/lab/deployments/old"):
        client.drift_report(old)
    with pytest.raises(FailedPrecondition, match="has 70 samples of"):
        client.drift_report(young)
    assert [b.deployment for b in store.blocks_since(None)] == [young, young]
