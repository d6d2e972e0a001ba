"""The stack under test: data, registry and monitor, the model registered, two inference servers deployed."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from .config import CLASSES, FEATURES, server_cpus
from .services import Service, start


def register_model(data: str, registry: str, home: Path) -> None:
    """A dataset version of 64-feature rows and labels, and a linear classifier trained from it."""
    os.environ.update({"ATELIER_DATA_ADDRESS": data, "ATELIER_REGISTRY_ADDRESS": registry, "ATELIER_PROJECT": "bench"})
    import torch

    import atelier
    from atelier.client import DataClient
    from atelier.datasets.push import push
    from atelier.names import parse_dataset_ref

    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (2000, FEATURES)).astype(np.float32)
    source = home / "rows"
    source.mkdir(parents=True)
    np.save(source / "features.npy", features)
    np.save(source / "labels.npy", np.argmax(features[:, :CLASSES], axis=1))
    client = DataClient.at(data)
    push(client, source, parse_dataset_ref("rows", "bench"))
    client.close()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, CLASSES)).eval()
    with atelier.start_run(experiment="rows", inputs=["rows@v1"], capture_code=False) as run:
        run.log_model(model, torch.zeros(2, FEATURES), name="rows")


def deploy(address: str) -> None:
    from atelier.client.inference import InferenceClient
    from atelier.inference.v1 import resources_pb2 as pb

    client = InferenceClient.at(address)
    created = client.create("bench", "rows", pb.Deployment(model="rows@latest"))
    settled = client.wait_settled(created.name)
    client.close()
    if settled.state != pb.DEPLOYMENT_STATE_READY:
        raise SystemExit(f"deployment failed: {settled.state_reason}")


def start_stack(args: argparse.Namespace, home: Path, services: list[Service]) -> tuple[Service, Service, Service]:
    """Data, registry, monitor and the model registered; then the two inference servers, deployed:
    (monitor, sampling on, sampling off)."""
    data = start("data", home, {})
    services.append(data)
    registry = start("registry", home, {"ATELIER_REGISTRY_DATA_ADDRESS": data.address})
    services.append(registry)
    links = {"ATELIER_MONITOR_DATA_ADDRESS": data.address, "ATELIER_MONITOR_REGISTRY_ADDRESS": registry.address}
    if args.drift_nice is not None:
        links["ATELIER_MONITOR_DRIFT_NICE"] = str(args.drift_nice)
    monitor = start("monitor", home, {**links, "ATELIER_MONITOR_DRIFT_INTERVAL_SECONDS": "5"})
    services.append(monitor)
    common = {
        "ATELIER_INFERENCE_DATA_ADDRESS": data.address,
        "ATELIER_INFERENCE_REGISTRY_ADDRESS": registry.address,
        "ATELIER_INFERENCE_MONITOR_ADDRESS": monitor.address,
        "ATELIER_INFERENCE_HTTP_PORT": "-1",
    }
    register_model(data.address, registry.address, home)
    rates = {"on": str(args.sample_rate), "off": "0"}
    servers = {}
    for label in ("off", "on") if args.start_off_first else ("on", "off"):
        rate = {"ATELIER_INFERENCE_DRIFT_SAMPLE_RATE": rates[label]}
        servers[label] = start("inference", home / label, {**common, **rate}, f"inference-{label}", server_cpus(args))
        services.append(servers[label])
        deploy(servers[label].address)
    return monitor, servers["on"], servers["off"]


def drift_window_rows(address: str) -> int:
    """Rows in the deployment's window (0 when the monitor has too few to report on)."""
    from atelier.client.monitor import MonitorClient
    from atelier.errors import AtelierError

    client = MonitorClient.at(address)
    try:
        return int(client.drift_report("projects/bench/deployments/rows").window_rows)
    except AtelierError:
        return 0
    finally:
        client.close()
