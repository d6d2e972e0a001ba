"""What drift sampling costs inference: request latency with sampling on and off, in the same run.

Target (issue 8): the monitor ingests drift samples from 1,000 requests/s without slowing inference by
more than 2% at the median.

Starts a data service, a registry, a monitor and two inference services (`python -m services.<name>`, a
fresh ATELIER_HOME under benchmarks/.work/drift): one with `ATELIER_INFERENCE_DRIFT_SAMPLE_RATE=1`
(every request sampled), one with 0. Both serve the same model: a 64-feature linear classifier
registered from a run whose input is a dataset version of 64-feature rows, so the monitor builds a real
reference and computes drift every 5 s during the run. An open-loop asyncio gRPC client sends
single-row ModelInfer requests at `--rate` per second, alternating between the two servers in phases of
`--phase-seconds`, and records each request's latency. It prints the median and p90 of each side, their
ratio, and the CPU time (user + system, from /proc) each inference process and the monitor used per
request: on a shared machine CPU time is the steadier figure.

    .venv/bin/python benchmarks/drift_sampling.py [--rate 1000] [--phase-seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work" / "drift"
FEATURES = 64
CLASSES = 10


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    address: str = ""

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    label: str
    service: Service
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0
    sent: int = 0
    failed: int = 0


def start(name: str, home: Path, extra: dict[str, str], file_name: str | None = None) -> Service:
    file_name = file_name or name
    address_file = home / "run" / f"{file_name}.json"
    prefix = f"ATELIER_{name.upper()}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    env.update({"ATELIER_HOME": str(home), "PYTHONPATH": str(REPO), f"{prefix}PORT": "0"})
    env.update({f"{prefix}ADDRESS_FILE": str(address_file), f"{prefix}METRICS_PORT": "-1", **extra})
    log = (WORK / f"{file_name}.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env, stdout=log, stderr=log, cwd=REPO)
    deadline = time.monotonic() + 60
    while not address_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{file_name} did not start; see {WORK / f'{file_name}.log'}")
        time.sleep(0.1)
    return Service(file_name, process, json.loads(address_file.read_text())["address"])


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


async def phase(side: Side, rate: float, seconds: float, payload: bytes) -> None:
    """Open loop: request i leaves at start + i / rate whatever the earlier ones are doing."""
    from atelier.inference.protocol import grpc_service_pb2 as ipb
    from atelier.inference.protocol import grpc_service_pb2_grpc as igrpc

    async with grpc.aio.insecure_channel(side.service.address) as channel:
        stub = igrpc.GRPCInferenceServiceStub(channel)
        request = ipb.ModelInferRequest(model_name="rows")
        tensor = request.inputs.add(name="input", datatype="FP32")
        tensor.shape.extend([1, FEATURES])
        request.raw_input_contents.append(payload)

        async def one() -> None:
            sent = time.perf_counter()
            try:
                await stub.ModelInfer(request, timeout=10)
                side.latencies.append(time.perf_counter() - sent)
            except grpc.aio.AioRpcError:
                side.failed += 1

        cpu = side.service.cpu_seconds()
        tasks = []
        started = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        side.sent += total
        side.cpu += side.service.cpu_seconds() - cpu


def summary(side: Side) -> dict[str, float | str]:
    ordered = sorted(side.latencies)
    return {
        "sampling": side.label,
        "requests": side.sent,
        "failed": side.failed,
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000,
        "inference_cpu_us_per_request": side.cpu / max(side.sent, 1) * 1e6,
    }


def sampler_cpu_us(requests: int = 20000) -> dict[str, float]:
    """CPU per request of the sampler's own work in-process (the steady part of the cost): the offer on the
    request path, and the sender's conversion and serialisation of the rows."""
    from typing import Any, cast

    from prometheus_client import CollectorRegistry

    from services.inference.queues import OutputTensor
    from services.inference.repository import Served
    from services.inference.sampling import DriftSampler, SamplingSettings, _sample, to_messages
    from services.inference.signature import Signature, TensorSpec
    from services.inference.spec import DeploymentSpec
    from services.inference.statistics import ModelStatistics
    from services.inference.tensors import datatype

    fp32 = datatype("FP32")
    signature = Signature((TensorSpec("input", fp32, (-1, FEATURES)),), (TensorSpec("output", fp32, (-1, CLASSES)),))
    served = Served("rows", "bench", 1, "projects/bench/models/rows/versions/v1", "torchscript", signature,
                    DeploymentSpec(), cast(Any, None), ModelStatistics())  # fmt: skip
    sampler = DriftSampler(lambda: "", SamplingSettings(queue_size=requests), CollectorRegistry())
    row = np.zeros((1, FEATURES), np.float32)
    output = OutputTensor(signature.outputs[0], (1, CLASSES), np.zeros((1, CLASSES), np.float32).tobytes())
    started = time.process_time()
    for _ in range(requests):
        sampler.offer(served, [row], [output])
    offered = time.process_time()
    pending = [_sample(*item) for item in sampler._pending]
    for start in range(0, requests, 1000):
        for message in to_messages(pending[start : start + 1000]):
            message.SerializeToString()
    converted = time.process_time()
    return {
        "offer_us": (offered - started) / requests * 1e6,
        "send_side_us": (converted - offered) / requests * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--phase-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="on/off phase pairs (alternating)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    home = WORK / "home"
    home.mkdir(parents=True)
    services: list[Service] = []
    try:
        data = start("data", home, {})
        services.append(data)
        registry = start("registry", home, {"ATELIER_REGISTRY_DATA_ADDRESS": data.address})
        services.append(registry)
        links = {"ATELIER_MONITOR_DATA_ADDRESS": data.address, "ATELIER_MONITOR_REGISTRY_ADDRESS": registry.address}
        monitor = start("monitor", home, {**links, "ATELIER_MONITOR_DRIFT_INTERVAL_SECONDS": "5"})
        services.append(monitor)
        common = {
            "ATELIER_INFERENCE_DATA_ADDRESS": data.address,
            "ATELIER_INFERENCE_REGISTRY_ADDRESS": registry.address,
            "ATELIER_INFERENCE_MONITOR_ADDRESS": monitor.address,
            "ATELIER_INFERENCE_HTTP_PORT": "-1",
        }
        register_model(data.address, registry.address, home)
        on = start("inference", home / "on", {**common, "ATELIER_INFERENCE_DRIFT_SAMPLE_RATE": "1"}, "inference-on")
        services.append(on)
        off = start("inference", home / "off", {**common, "ATELIER_INFERENCE_DRIFT_SAMPLE_RATE": "0"}, "inference-off")
        services.append(off)
        for server in (on, off):
            deploy(server.address)
        payload = np.random.default_rng(1).normal(0, 1, (1, FEATURES)).astype(np.float32).tobytes()
        sides = [Side("on", on), Side("off", off)]
        for server in (on, off):
            asyncio.run(phase(Side("warm-up", server), args.rate, 1.0, payload))
        monitor_cpu = monitor.cpu_seconds()
        for round_ in range(args.rounds):
            for current in sides if round_ % 2 == 0 else reversed(sides):
                asyncio.run(phase(current, args.rate, args.phase_seconds, payload))
        monitor_cpu = monitor.cpu_seconds() - monitor_cpu
        results = [summary(side) for side in sides]
        report = {
            "rate": args.rate,
            "results": results,
            "median_ratio_on_off": float(results[0]["median_ms"]) / float(results[1]["median_ms"]),
            "monitor_cpu_us_per_sampled_request": monitor_cpu / max(sides[0].sent, 1) * 1e6,
            "load_average": os.getloadavg(),
        }
        drift = _drift_report(monitor.address)
        report["drift_window_rows"] = drift
        report["sampler_cpu_us_per_request"] = sampler_cpu_us()
        if args.json:
            print(json.dumps(report, indent=2))
            return
        print(f"open loop, {args.rate:.0f} single-row requests/s, {args.rounds} x {args.phase_seconds}s per side")
        print("| sampling | requests | failed | median ms | p90 ms | inference CPU us/request |")
        print("|---|---|---|---|---|---|")
        for r in results:
            print(
                f"| {r['sampling']} | {r['requests']} | {r['failed']} | {float(r['median_ms']):.3f} | "
                f"{float(r['p90_ms']):.3f} | {float(r['inference_cpu_us_per_request']):.0f} |"
            )
        print(f"median latency on/off: {report['median_ratio_on_off']:.3f}")
        print(f"monitor CPU per sampled request: {report['monitor_cpu_us_per_sampled_request']:.0f} us")
        micro = report["sampler_cpu_us_per_request"]
        print(
            f"sampler CPU per request in-process: {micro['offer_us']:.1f} us on the request path, "
            f"{micro['send_side_us']:.1f} us in the sender thread"
        )
        print(f"monitor window: {drift} rows; load average {os.getloadavg()}")
    finally:
        for service in reversed(services):
            service.process.send_signal(signal.SIGTERM)
        for service in reversed(services):
            try:
                service.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.process.kill()


def _drift_report(address: str) -> int:
    from atelier.client.monitor import MonitorClient

    client = MonitorClient.at(address)
    try:
        return int(client.drift_report("projects/bench/deployments/rows").window_rows)
    finally:
        client.close()


if __name__ == "__main__":
    main()
