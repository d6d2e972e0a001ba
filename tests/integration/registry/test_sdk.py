"""The training-script SDK: start_run, background metrics, artifacts, log_model, failure marking."""

from __future__ import annotations

import io
import math
import subprocess
import threading
from pathlib import Path

import pytest
import torch

import atelier
from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import push
from atelier.names import parse_dataset_ref
from atelier.registry.v1 import resources_pb2 as pb
from atelier.tracking.buffer import MetricBuffer
from tests.integration.data.helpers import write_tree


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1))


@pytest.fixture
def clients(
    stack: tuple[DataClient, RegistryClient], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[DataClient, RegistryClient]:
    data, registry = stack
    monkeypatch.setenv("ATELIER_DATA_ADDRESS", data.address)
    monkeypatch.setenv("ATELIER_REGISTRY_ADDRESS", registry.address)
    monkeypatch.setenv("ATELIER_PROJECT", "lab")
    repo = tmp_path / "code"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "a@b"], ["config", "user.name", "a"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "train.py").write_text("print('train')\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True)
    (repo / "train.py").write_text("print('train, edited')\n")
    monkeypatch.chdir(repo)
    write_tree(tmp_path / "digits", {"labels.csv": b"a,1\n"})
    push(data, tmp_path / "digits", parse_dataset_ref("digits", "lab"))
    return data, registry


def test_training_script_logs_run_and_model(clients: tuple[DataClient, RegistryClient]) -> None:
    data, registry = clients
    model = Tiny()
    example = torch.randn(4, 1, 8, 8)
    with atelier.start_run(experiment="digits", params={"lr": 0.01}, inputs=["digits@latest"]) as run:
        for step in range(3000):
            run.log_metrics({"loss": 1.0 / (step + 1), "lr": 0.01}, step=step)
        run.log_metrics({"val_accuracy": 0.91}, step=3000)
        version = run.log_model(model, example, name="digits")

    assert run.report is not None
    assert (run.report.sent, run.report.lost) == (6001, 0)
    finished = registry.get_run(run.name)
    assert finished.state == pb.RUN_STATE_FINISHED
    assert finished.metrics["val_accuracy"] == pytest.approx(0.91)
    assert finished.code.dirty
    assert b"edited" in b"".join(data.read_file(finished.code.diff_artifact, "uncommitted.diff"))
    assert finished.environment.torch_version.startswith("2.")
    assert version.lineage.datasets == ["projects/lab/datasets/digits/versions/v1"]
    assert version.lineage.code.commit == finished.code.commit
    assert version.metrics["val_accuracy"] == pytest.approx(0.91)
    assert [(s.name, list(s.shape)) for s in version.signature.inputs] == [("input", [-1, 1, 8, 8])]
    assert [(s.name, list(s.shape)) for s in version.signature.outputs] == [("output", [-1, 10])]
    stored = b"".join(data.read_file(version.artifact, "model.pt"))
    loaded = torch.jit.load(io.BytesIO(stored))
    torch.testing.assert_close(loaded(example), model(example))


def test_a_diverging_run_keeps_its_finite_metrics(clients: tuple[DataClient, RegistryClient]) -> None:
    _, registry = clients
    with atelier.start_run(experiment="digits") as run:
        for step in range(100):
            loss = float("nan") if step >= 50 else 1.0 / (step + 1)
            run.log_metrics({"loss": loss, "grad_norm": 2.0 * step}, step=step)

    assert run.report is not None
    assert (run.report.sent, run.report.lost) == (200, 0)
    finished = registry.get_run(run.name)
    assert finished.metrics["grad_norm"] == pytest.approx(198.0)  # the last step's, logged beside a NaN
    assert math.isnan(finished.metrics["loss"])
    history = list(registry.metric_history(run.name, "loss"))
    assert len(history) == 100
    assert history[49].value == pytest.approx(1.0 / 50)
    assert all(math.isnan(point.value) for point in history[50:])


def test_exception_marks_the_run_failed(clients: tuple[DataClient, RegistryClient]) -> None:
    _, registry = clients
    started: list[str] = []

    def train() -> None:
        with atelier.start_run(experiment="digits") as run:
            started.append(run.name)
            run.log_metrics({"loss": 1.0}, step=0)
            raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        train()
    failed = registry.get_run(started[0])
    assert failed.state == pb.RUN_STATE_FAILED
    assert failed.state_message == "RuntimeError: diverged"


def test_log_model_in_export_and_state_dict_formats(clients: tuple[DataClient, RegistryClient]) -> None:
    data, _ = clients
    with atelier.start_run(experiment="digits") as run:
        exported = run.log_model(Tiny(), torch.randn(2, 1, 8, 8), name="digits", format="export")
        weights = run.log_model(Tiny(), torch.randn(2, 1, 8, 8), name="digits", format="state_dict")
    assert exported.format == pb.MODEL_FORMAT_TORCH_EXPORT
    program = torch.export.load(io.BytesIO(b"".join(data.read_file(exported.artifact, "model.pt2"))))
    assert program.module()(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    assert weights.module_class == f"{Tiny.__module__}:Tiny"


def test_an_unreachable_registry_never_blocks_the_loop() -> None:
    from atelier.errors import Unavailable

    hung = threading.Event()

    def down(columns: object) -> None:
        hung.wait()  # the registry does not answer until the loop is done
        raise Unavailable("registry down")

    buffer = MetricBuffer(down, batch=100, interval=0.01, retry_for=0.2)
    for step in range(10_000):
        buffer.add({"loss": 0.5}, step)  # would never return if it waited on the sender
    hung.set()
    report = buffer.close(timeout=10)
    assert (report.sent, report.lost) == (0, 10_000)
