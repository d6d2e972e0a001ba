"""Every panel of every shipped Grafana dashboard, and of NVIDIA's dcgm-exporter dashboard (12239), has
data against a real stack: `atelier up --with-prometheus`, two agents on declared inventories, and load
(a push and a pull, a failed call, a run with a model version, a running and a waiting job, a deployed
classifier trained on the pushed dataset version serving requests, which inference samples to the monitor
for drift)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atelier.client import DataClient, RegistryClient
from atelier.client.inference import InferenceClient
from atelier.client.scheduler import SchedulerClient
from atelier.datasets.pull import pull
from atelier.datasets.push import push, store_artifact
from atelier.errors import NotFound
from atelier.inference.v1 import resources_pb2 as inference_pb
from atelier.names import parse_dataset_ref
from atelier.registry.v1 import resources_pb2 as registry_pb
from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.stack.addresses import address_file, read_address_file
from tests.e2e.test_stack import atelier

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (make prometheus)"),
]

NVIDIA_12239_VARIABLES = {
    "instance": "label_values(DCGM_FI_DEV_GPU_TEMP, instance)",
    "gpu": "label_values(DCGM_FI_DEV_GPU_TEMP, gpu)",
}
"""NVIDIA's dcgm-exporter dashboard: its variables and (below) the series and selectors its panels query
(from ../shared/reference/monitoring.md; the dashboard itself is not vendored)."""
_SEL = '{instance=~"$instance", gpu=~"$gpu"}'
NVIDIA_12239_PANELS = {
    "GPU Temperature": f"DCGM_FI_DEV_GPU_TEMP{_SEL}",
    "GPU Avg. Temp": f"avg(DCGM_FI_DEV_GPU_TEMP{_SEL})",
    "GPU Power Usage": f"DCGM_FI_DEV_POWER_USAGE{_SEL}",
    "GPU Power Total": f"sum(DCGM_FI_DEV_POWER_USAGE{_SEL})",
    "GPU SM Clocks": f"DCGM_FI_DEV_SM_CLOCK{_SEL} * 1000000",
    "GPU Utilization": f"DCGM_FI_DEV_GPU_UTIL{_SEL}",
    "GPU Framebuffer Mem Used": f"DCGM_FI_DEV_FB_USED{_SEL}",
    "Tensor Core Utilization": f"avg by (instance, gpu) (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{_SEL})",
}


class Prometheus:
    def __init__(self, address: str) -> None:
        self.address = address

    def get(self, path: str, **params: str | list[str]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"http://{self.address}{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[Any]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def label_values(self, definition: str, resolved: dict[str, str]) -> list[str]:
        match = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", definition.strip())
        assert match, f"unsupported variable query {definition!r}"
        selector, label = match.group(1), match.group(2)
        params: dict[str, str | list[str]] = {}
        if selector:
            params["match[]"] = [substitute(selector, resolved)]
        return list(self.get(f"/api/v1/label/{label}/values", **params))


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def resolve(prometheus: Prometheus, variables: dict[str, str]) -> dict[str, str]:
    """Each query variable set to "All" (its values as a regex), after checking it has values."""
    resolved: dict[str, str] = {}
    for name, definition in variables.items():
        values = prometheus.label_values(definition, resolved)
        assert values, f"variable {name} ({definition}) has no values"
        resolved[name] = ".*"
    return resolved


@pytest.fixture
def loaded_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Prometheus, Path]]:
    home = tmp_path / "home"
    result = atelier(home, "up", "--detach", "--base-port", "0", "--with-prometheus", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    agents: list[subprocess.Popen[bytes]] = []
    try:
        for node, cards in {"n1": [{"model": "A100-80", "count": 2}], "n2": [{"model": "T4", "count": 2}]}.items():
            inventory = tmp_path / f"{node}.json"
            inventory.write_text(json.dumps({"cards": cards}))
            env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
            env.update({"ATELIER_HOME": str(home), "ATELIER_AGENT_METRICS_HOST": "127.0.0.1"})
            command = ["agent", "--name", node, "--inventory", str(inventory), "--address", "127.0.0.1"]
            log = (tmp_path / f"{node}.log").open("wb")
            agents.append(
                subprocess.Popen(
                    [sys.executable, "-m", "atelier.cli.main", *command], env=env, cwd=ROOT, stdout=log, stderr=log
                )
            )
        monkeypatch.setenv("ATELIER_HOME", str(home))  # the SDK's run and log_model find the stack there
        monkeypatch.setenv("ATELIER_PROJECT", "vision")
        load(home, tmp_path)
        found = read_address_file(address_file(home, "prometheus"))
        assert found is not None
        yield Prometheus(found.address), home
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
        atelier(home, "down")


def address(home: Path, service: str) -> str:
    found = read_address_file(address_file(home, service))
    assert found is not None, service
    return found.address


def load(home: Path, tmp_path: Path) -> None:
    data = DataClient.at(address(home, "data"))
    registry = RegistryClient.at(address(home, "registry"))
    scheduler = SchedulerClient.at(address(home, "scheduler"))
    source = tmp_path / "digits"
    source.mkdir()
    for i in range(20):
        (source / f"{i}.bin").write_bytes(os.urandom(4096))
    features = np.random.default_rng(0).normal(0, 1, (500, 8)).astype(np.float32)
    np.save(source / "features.npy", features)  # the drift reference of the classifier below
    np.save(source / "labels.npy", np.argmax(features[:, :3], axis=1))
    push(data, source, parse_dataset_ref("digits", "vision"))
    pull(data, parse_dataset_ref("digits@v1", "vision"), tmp_path / "copy")
    with pytest.raises(NotFound):
        data.get_dataset("projects/vision/datasets/missing")  # an error for the error panels
    run = registry.create_run("projects/vision/experiments/digits", registry_pb.Run(inputs=["digits@v1"]))
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    artifact = store_artifact(data, "vision", weights)
    registry.create_version(
        "projects/vision/models/digits",
        registry_pb.ModelVersion(
            artifact=artifact.name,
            format=registry_pb.MODEL_FORMAT_TORCHSCRIPT,
            lineage=registry_pb.Lineage(run=run.name),
        ),
    )
    deadline = time.monotonic() + 60
    while len(list(scheduler.list_nodes())) < 2:
        assert time.monotonic() < deadline, "the agents did not register"
        time.sleep(0.5)
    sleeper = pb.Job(
        command=[sys.executable, "-c", "import time; time.sleep(600)"],
        launcher=pb.LAUNCHER_COMMAND,
        resources=pb.Resources(gpus_per_node=1, min_gpu_memory_bytes=40 * 1024**3),
        user="ana",
    )
    running = scheduler.submit("vision", sleeper, "train")
    waiting = pb.Job()
    waiting.CopyFrom(sleeper)
    waiting.resources.gpus_per_node = 2
    scheduler.submit("speech", waiting, "wide")  # both A100s: waits while `train` holds one
    while scheduler.get_job(running.name).state != pb.JOB_STATE_RUNNING:
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.5)
    serve_classifier(home, features)
    through_the_gateway(home)
    for client in (data, registry, scheduler):
        client.close()


def through_the_gateway(home: Path) -> None:
    """REST requests (one answered, one 404) and a gRPC call through the front door."""
    gateway = read_address_file(address_file(home, "gateway"))
    assert gateway is not None
    assert gateway.http
    base = f"http://{gateway.http}"
    with urllib.request.urlopen(f"{base}/v1/projects/vision") as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/v1/projects/missing")
    assert refused.value.code == 404
    front_door = DataClient.at(gateway.address)
    front_door.get_project("projects/vision")
    front_door.close()


def serve_classifier(home: Path, features: np.ndarray) -> None:  # type: ignore[type-arg]
    """A classifier logged from a run on digits@v1, deployed, and 200 requests (half of them shifted, so
    that the drift panels have something to show); inference samples them to the monitor."""
    import torch
    import tritonclient.grpc as grpcclient

    import atelier

    with atelier.start_run(experiment="classifier", inputs=["digits@v1"], capture_code=False) as run:
        run.log_model(torch.nn.Linear(8, 3).eval(), torch.zeros(2, 8), name="classifier")
    inference = InferenceClient.at(address(home, "inference"))
    created = inference.create("vision", "classifier", inference_pb.Deployment(model="classifier@latest"))
    settled = inference.wait_settled(created.name)
    assert settled.state == inference_pb.DEPLOYMENT_STATE_READY, settled.state_reason
    inference.close()
    client = grpcclient.InferenceServerClient(url=address(home, "inference"))
    for i in range(200):
        row = features[i : i + 1] + (2.0 if i >= 100 else 0.0)
        tensor = grpcclient.InferInput("input", [1, 8], "FP32")
        tensor.set_data_from_numpy(row)
        client.infer("classifier", [tensor])
    client.close()


def test_every_panel_has_data(loaded_stack: tuple[Prometheus, Path]) -> None:
    prometheus, _ = loaded_stack
    panels: list[tuple[str, dict[str, str], str]] = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        variables = {v["name"]: v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                panels.append((f"{dashboard['uid']} / {panel['title']}", variables, target["expr"]))
    for title, expr in NVIDIA_12239_PANELS.items():
        panels.append((f"dcgm-exporter 12239 / {title}", NVIDIA_12239_VARIABLES, expr))
    assert len(DASHBOARDS) >= 6

    deadline = time.monotonic() + 90
    while True:
        empty = []
        for name, variables, expr in panels:
            try:
                resolved = resolve(prometheus, variables)
            except AssertionError as error:
                empty.append(f"{name}: {error}")
                continue
            if not prometheus.query(substitute(expr, resolved)):
                empty.append(f"{name}: {substitute(expr, resolved)}")
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert empty == []
