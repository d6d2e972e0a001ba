"""Drift end to end: a model trained on a dataset version is deployed; inference samples its traffic to the
monitor, which compares it with that dataset version (found through the model's lineage). Unshifted traffic
does not drift, shifted traffic does, the scores are Evidently's on the same rows, and the report reaches
the metrics, the RPC and `atelier serve drift`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

import atelier
from atelier.client import DataClient, RegistryClient
from atelier.client.inference import InferenceClient
from atelier.client.monitor import MonitorClient
from atelier.datasets.push import push
from atelier.errors import FailedPrecondition, NotFound
from atelier.inference.v1 import resources_pb2 as pb
from atelier.monitor.v1 import monitor_service_pb2 as monitor_pb
from atelier.names import parse_dataset_ref
from atelier.stack.addresses import address_file, read_address_file

pytestmark = pytest.mark.timeout(240)
FEATURES = 4
WINDOW = 300
DEPLOYMENT = "projects/lab/deployments/blobs"


@dataclass
class Stack:
    data: DataClient
    registry: RegistryClient
    inference: InferenceClient
    monitor: MonitorClient
    inference_address: str
    monitor_address: str
    home: Path


@pytest.fixture
def stack(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.inference.server import build as build_inference
    from services.inference.settings import InferenceSettings
    from services.monitor.server import build as build_monitor
    from services.monitor.settings import MonitorSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings

    home = tmp_path / "home"
    data = serve(lambda: build_data(DataSettings(home=home)))
    registry = serve(lambda: build_registry(RegistrySettings(home=home, data_address=data)))
    monitor_settings = MonitorSettings(
        home=home,
        data_address=data,
        registry_address=registry,
        drift_window_rows=WINDOW,
        drift_min_rows=WINDOW,
        address_file=address_file(home, "monitor"),
    )
    monitor = serve(lambda: build_monitor(monitor_settings))
    inference_settings = InferenceSettings(
        home=home, data_address=data, registry_address=registry, monitor_address=monitor, drift_flush_seconds=0.1
    )
    inference = serve(lambda: build_inference(inference_settings))
    monkeypatch.setenv("ATELIER_DATA_ADDRESS", data)
    monkeypatch.setenv("ATELIER_REGISTRY_ADDRESS", registry)
    monkeypatch.setenv("ATELIER_PROJECT", "lab")
    made = Stack(
        DataClient.at(data),
        RegistryClient.at(registry),
        InferenceClient.at(inference),
        MonitorClient.at(monitor),
        inference,
        monitor,
        home,
    )
    yield made
    for client in (made.data, made.registry, made.inference, made.monitor):
        client.close()


def blobs(rows: int, shift: float, seed: int) -> npt.NDArray[np.float32]:
    """Four features: two Gaussians, a skewed one and a uniform one; `shift` moves all of them."""
    rng = np.random.default_rng(seed)
    columns = [rng.normal(0, 1, rows), rng.normal(2, 0.5, rows), rng.exponential(1, rows), rng.uniform(-1, 1, rows)]
    return (np.stack(columns, axis=1) + shift).astype(np.float32)


def train_and_deploy(stack: Stack, tmp_path: Path) -> tuple[torch.nn.Module, npt.NDArray[np.float32]]:
    """Push `blobs` (features.npy, labels.npy), train a linear classifier on it in a run that names it as
    input, register the model (its lineage then names the dataset version) and deploy it."""
    features = blobs(600, 0.0, seed=1)
    labels = (features[:, 0] + features[:, 3] > 0).astype(np.int64) + (features[:, 2] > 1.5)
    source = tmp_path / "blobs"
    source.mkdir()
    np.save(source / "features.npy", features)
    np.save(source / "labels.npy", labels)
    (source / "README.md").write_text("four features and a class\n")
    push(stack.data, source, parse_dataset_ref("blobs", "lab"))
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    for _ in range(100):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    model.eval()
    with atelier.start_run(experiment="blobs", inputs=["blobs@v1"], capture_code=False) as run:
        run.log_model(model, torch.zeros(2, FEATURES), name="blobs")
    created = stack.inference.create("lab", "blobs", pb.Deployment(model="blobs@latest"))
    settled = stack.inference.wait_settled(created.name)
    assert settled.state == pb.DEPLOYMENT_STATE_READY, settled.state_reason
    return model, features


def send(stack: Stack, rows: npt.NDArray[np.float32]) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=stack.inference_address)
    for start in range(0, len(rows), 5):
        batch = rows[start : start + 5]
        tensor = grpcclient.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        client.infer("blobs", [tensor])
    client.close()


def report_after(stack: Stack, sent: int) -> monitor_pb.DriftReport:
    """The report once the monitor has received `sent` rows from this deployment."""
    deadline = time.monotonic() + 60
    while True:
        received = scrape(stack).get(
            'atelier_monitor_drift_samples_received_total{deployment="blobs",project="lab"}', 0
        )
        if received >= sent:
            return stack.monitor.drift_report(DEPLOYMENT)
        assert time.monotonic() < deadline, f"the monitor received {received} of {sent} rows"
        time.sleep(0.2)


def scrape(stack: Stack) -> dict[str, float]:
    published = read_address_file(address_file(stack.home, "monitor"))
    assert published is not None
    with urllib.request.urlopen(f"http://{published.metrics}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return values


def test_shifted_traffic_drifts_and_evidently_agrees(stack: Stack, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no drift samples"):
        stack.monitor.drift_report(DEPLOYMENT)
    model, reference = train_and_deploy(stack, tmp_path)

    send(stack, blobs(WINDOW // 2, 0.0, seed=2))
    with pytest.raises(FailedPrecondition, match=f"150 samples .* judged from {WINDOW}"):
        report_after(stack, WINDOW // 2)
    send(stack, blobs(WINDOW // 2, 0.0, seed=3))
    calm = report_after(stack, WINDOW)
    assert calm.model_version == "projects/lab/models/blobs/versions/v1"
    assert calm.reference_dataset == "projects/lab/datasets/blobs/versions/v1"
    assert (calm.reference_file, calm.reference_rows, calm.window_rows) == ("features.npy", 600, WINDOW)
    assert [c.column for c in calm.features] == [f"input[{i}]" for i in range(FEATURES)]
    assert [c.test for c in calm.features] == ["ks"] * FEATURES  # Evidently's choice for 600 reference rows
    assert not calm.dataset_drift
    assert calm.prediction.column == "prediction"
    assert calm.prediction.kind == "categorical"

    shifted = blobs(WINDOW, 0.8, seed=4)
    send(stack, shifted)
    drifted = report_after(stack, 2 * WINDOW)
    assert drifted.dataset_drift
    assert drifted.drifted_share == 1.0
    assert drifted.prediction.drifted
    metrics = scrape(stack)
    labels = 'deployment="blobs",model="blobs",project="lab",version="1"'  # the exposition sorts labels
    assert metrics[f"atelier_monitor_dataset_drift{{{labels}}}"] == 1.0
    assert metrics[f"atelier_monitor_prediction_drift{{{labels}}}"] == 1.0
    score = (
        'atelier_monitor_drift_score{column="input[0]",deployment="blobs",model="blobs",project="lab",'
        'test="ks",version="1"}'
    )
    assert metrics[score] == pytest.approx(drifted.features[0].score)

    # The same scores and verdicts from the evidently package, on the same rows.
    from services.monitor.drift import ColumnKind
    from tests.unit.monitor.test_drift_evidently import _evidently_drift

    labels_reference = np.load(tmp_path / "blobs" / "labels.npy")
    with torch.no_grad():
        predicted = model(torch.from_numpy(shifted)).argmax(dim=1).numpy()
    names = [f"input[{i}]" for i in range(FEATURES)]
    theirs = _evidently_drift(
        {**{n: reference[:, i].astype(np.float64) for i, n in enumerate(names)}, "prediction": labels_reference},
        {**{n: shifted[:, i].astype(np.float64) for i, n in enumerate(names)}, "prediction": predicted},
        {**dict.fromkeys(names, ColumnKind.NUMERIC), "prediction": ColumnKind.CATEGORICAL},
    )
    for column in [*drifted.features, drifted.prediction]:
        test, value, verdict = theirs[column.column]
        assert column.test == test.value, column.column
        assert column.score == pytest.approx(value, rel=1e-6, abs=1e-9), column.column
        assert column.drifted is verdict, column.column


def test_cli_prints_the_report(stack: Stack, tmp_path: Path) -> None:
    train_and_deploy(stack, tmp_path)
    send(stack, blobs(WINDOW, 1.0, seed=5))
    report_after(stack, WINDOW)
    env = {**os.environ, "ATELIER_MONITOR_ADDRESS": stack.monitor_address, "ATELIER_PROJECT": "lab"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "atelier.cli.main", "serve", "drift", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    printed = cli("blobs", "--json")
    assert printed.returncode == 0, printed.stderr
    report = json.loads(printed.stdout)
    assert report["datasetDrift"] is True
    assert [c["column"] for c in report["features"]] == [f"input[{i}]" for i in range(FEATURES)]
    table = cli("blobs")
    assert table.returncode == 0, table.stderr
    assert "DRIFT" in table.stdout
    assert "4 of 4 features drifted" in table.stdout
    missing = cli("nothing")
    assert missing.returncode != 0
    assert "no drift samples received for projects/lab/deployments/nothing" in missing.stdout + missing.stderr


def test_an_image_dataset_listed_in_a_csv_is_the_reference_of_an_image_model(stack: Stack, tmp_path: Path) -> None:
    """The demo's layout: `images/<label>/<i>.png` and `labels.csv` (`file,label,split`); the model takes
    [N, 1, 4, 4] floats in 0..1, as `ToTensor` would give it."""
    from PIL import Image

    rng = np.random.default_rng(6)
    source = tmp_path / "glyphs"
    lines = ["file,label,split"]
    for i in range(150):
        label = i % 2
        pixels = (rng.uniform(0, 0.5, (4, 4)) + 0.5 * label) * 255
        path = f"images/{label}/{i:03d}.png"
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8), mode="L").save(source / path)
        lines.append(f"{path},{label},{'test' if i % 5 == 0 else 'train'}")
    (source / "labels.csv").write_text("\n".join(lines) + "\n")
    push(stack.data, source, parse_dataset_ref("glyphs", "lab"))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
    with atelier.start_run(experiment="glyphs", inputs=["glyphs@v1"], capture_code=False) as run:
        run.log_model(model, torch.zeros(2, 1, 4, 4), name="glyphs")
    created = stack.inference.create("lab", "glyphs", pb.Deployment(model="glyphs@latest"))
    assert stack.inference.wait_settled(created.name).state == pb.DEPLOYMENT_STATE_READY

    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=stack.inference_address)
    for _ in range(WINDOW // 5):
        labels = rng.integers(0, 2, 5)
        batch = (rng.uniform(0, 0.5, (5, 1, 4, 4)) + 0.5 * labels[:, None, None, None]).astype(np.float32)
        tensor = grpcclient.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        client.infer("glyphs", [tensor])
    client.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            report = stack.monitor.drift_report("projects/lab/deployments/glyphs")
            break
        except (NotFound, FailedPrecondition):  # no samples yet, or fewer than the window needs
            assert time.monotonic() < deadline, "the monitor did not receive the samples"
            time.sleep(0.2)
    assert (report.reference_file, report.reference_rows) == ("labels.csv", 150)
    assert [c.column for c in report.features] == [f"input[{i}]" for i in range(16)]
    assert not report.dataset_drift  # the same distribution as the training images, within 8-bit rounding
