"""What drift sampling costs inference: request latency with sampling on and off, in the same run.

Target (issue 8): the monitor ingests drift samples from 1,000 requests/s without slowing inference by
more than 2% at the median.

Starts a data service, a registry, a monitor and two inference services (`python -m services.<name>`, a
fresh ATELIER_HOME under benchmarks/.work/drift): one with `ATELIER_INFERENCE_DRIFT_SAMPLE_RATE=1`
(every request sampled), one with 0. Both serve the same model: a 64-feature linear classifier
registered from a run whose input is a dataset version of 64-feature rows, so the monitor builds a real
reference and compares its window every 5 s (when new samples came) during the run. An open-loop
asyncio gRPC client sends single-row ModelInfer requests at `--rate` per second in phases of
`--phase-seconds`, one phase per side in each of `--rounds` rounds, back to back, the order alternating
(on-off, off-on, ...), so that a drift of the machine's other load over time falls on both sides.

It prints each round's medians and their ratio, the median of those ratios (the figure to judge the
target by) and the ratio of the pooled medians; per side the p90, failures, and the CPU time (user +
system, from /proc) the inference process and the client used per request and the share of the
machine's cores busy; the monitor's CPU per sampled request over the whole run; the load average before
and after; and whether the load saturated anything (the client behind its schedule, the client near a
whole core, the cores nearly all busy), in which case the latencies measure queues, not the sampler.
The monitor's work on the samples of an on phase's last second falls into the phase after it. It also
prints each inference server's CPU per request by thread (`main` is the event loop).

With `--pin-servers` both inference servers run on the last core and the client on the others, so both
sides' CPU is measured on one core (one side is busy at a time). Unpinned, A/A runs (`--sample-rate 0`)
showed the two servers 9-30 us of CPU per request apart with no sampling at all, the side started first
the dearer (presumably the cores, shared with other work, are not equally loaded); pinned, 8 us.

    .venv/bin/python benchmarks/drift_sampling.py [--rate 1000] [--phase-seconds 5] [--rounds 3]
        [--drift-nice N] [--sample-rate 1]   # --sample-rate 0: both servers sample nothing (A/A, the noise)
        [--pin-servers]
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
from typing import Any

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

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU per kind of thread: `main` (the event loop) and the others by their name, summed."""
        seconds: dict[str, float] = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:  # the thread ended meanwhile
                continue
            name = "main" if task.name == str(self.process.pid) else stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rpartition(")")[2].split()
            seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return seconds


@dataclass
class Phase:
    """One side's requests during one phase, and what the machine spent meanwhile."""

    label: str
    round: int
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    late: int = 0
    """Requests the client sent more than 1 ms behind their schedule (the client could not keep up)."""
    seconds: float = 0.0
    server_cpu: float = 0.0
    server_threads: dict[str, float] = field(default_factory=dict)
    """The server's CPU per kind of thread (see `Service.thread_cpu_seconds`)."""
    client_cpu: float = 0.0
    machine_busy: float = 0.0
    """Share of all cores busy (from /proc/stat), whatever the process."""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p90_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.9)] * 1000 if ordered else float("nan")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


def start(
    name: str, home: Path, extra: dict[str, str], file_name: str | None = None, cpus: set[int] | None = None
) -> Service:
    file_name = file_name or name
    address_file = home / "run" / f"{file_name}.json"
    prefix = f"ATELIER_{name.upper()}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    env.update({"ATELIER_HOME": str(home), "PYTHONPATH": str(REPO), f"{prefix}PORT": "0"})
    env.update({f"{prefix}ADDRESS_FILE": str(address_file), f"{prefix}METRICS_PORT": "-1", **extra})
    log = (WORK / f"{file_name}.log").open("wb")
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None  # every thread it starts inherits it
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"], env=env, stdout=log, stderr=log, cwd=REPO, preexec_fn=pin
    )
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


async def phase(current: Phase, service: Service, rate: float, seconds: float, payload: bytes) -> None:
    """Open loop: request i leaves at start + i / rate whatever the earlier ones are doing."""
    from atelier.inference.protocol import grpc_service_pb2 as ipb
    from atelier.inference.protocol import grpc_service_pb2_grpc as igrpc

    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = igrpc.GRPCInferenceServiceStub(channel)
        request = ipb.ModelInferRequest(model_name="rows")
        tensor = request.inputs.add(name="input", datatype="FP32")
        tensor.shape.extend([1, FEATURES])
        request.raw_input_contents.append(payload)

        async def one() -> None:
            sent = time.perf_counter()
            try:
                await stub.ModelInfer(request, timeout=10)
                current.latencies.append(time.perf_counter() - sent)
            except grpc.aio.AioRpcError:
                current.failed += 1

        server_cpu, client_cpu, ticks = service.cpu_seconds(), time.process_time(), machine_ticks()
        threads = service.thread_cpu_seconds()
        tasks = []
        started = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001:
                current.late += 1
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        busy, all_ticks = (now - before for now, before in zip(machine_ticks(), ticks, strict=True))
        current.seconds = time.perf_counter() - started
        current.sent = total
        current.server_cpu = service.cpu_seconds() - server_cpu
        current.server_threads = {
            name: cpu - threads.get(name, 0.0) for name, cpu in service.thread_cpu_seconds().items()
        }
        current.client_cpu = time.process_time() - client_cpu
        current.machine_busy = busy / max(all_ticks, 1)


def sampler_cpu_us(requests: int = 20000) -> dict[str, float]:
    """CPU per request of the sampler's own work in-process (the steady part of the cost): the offer on the
    request path, and the sender's conversion and serialisation of the rows (on the event loop too)."""
    from typing import cast

    from prometheus_client import CollectorRegistry

    from services.inference.queues import OutputTensor
    from services.inference.repository import Served
    from services.inference.sampling import DriftSampler, SamplingSettings, to_message
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

    async def offer_all() -> float:  # offers are made on the server's event loop
        started = time.process_time()
        for _ in range(requests):
            sampler.offer(served, [row], [output])
        return time.process_time() - started

    offer_seconds = asyncio.run(offer_all())  # the sender task, still asleep, is cancelled as the loop ends
    offered = time.process_time()
    for queued in sampler._rows.values():
        for start in range(0, queued.count, 1000):
            to_message(queued, start, min(start + 1000, queued.count)).SerializeToString()
    converted = time.process_time()
    return {
        "offer_us": offer_seconds / requests * 1e6,
        "send_side_us": (converted - offered) / requests * 1e6,
    }


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


def server_cpus(args: argparse.Namespace) -> set[int] | None:
    """With --pin-servers: the last core, for both inference servers (one is busy at a time)."""
    return {max(os.sched_getaffinity(0))} if args.pin_servers else None


def run_phases(on: Service, off: Service, args: argparse.Namespace, payload: bytes) -> list[Phase]:
    """Rounds of one phase per side, back to back, the order alternating (on-off, off-on, ...)."""
    phases = []
    for round_ in range(args.rounds):
        order = [("on", on), ("off", off)] if round_ % 2 == 0 else [("off", off), ("on", on)]
        for label, server in order:
            current = Phase(label, round_ + 1)
            asyncio.run(phase(current, server, args.rate, args.phase_seconds, payload))
            phases.append(current)
    return phases


def side_summary(phases: list[Phase]) -> dict[str, Any]:
    latencies = sorted(latency for p in phases for latency in p.latencies)
    sent = sum(p.sent for p in phases)
    seconds = sum(p.seconds for p in phases)
    return {
        "requests": sent,
        "failed": sum(p.failed for p in phases),
        "late_share": sum(p.late for p in phases) / max(sent, 1),
        "median_ms": statistics.median(latencies) * 1000,
        "p90_ms": latencies[int(len(latencies) * 0.9)] * 1000,
        "inference_cpu_us_per_request": sum(p.server_cpu for p in phases) / max(sent, 1) * 1e6,
        "client_cpu_us_per_request": sum(p.client_cpu for p in phases) / max(sent, 1) * 1e6,
        "inference_thread_cpu_us_per_request": {
            name: sum(p.server_threads.get(name, 0.0) for p in phases) / max(sent, 1) * 1e6
            for name in sorted({name for p in phases for name in p.server_threads})
        },
        "client_cores": sum(p.client_cpu for p in phases) / max(seconds, 1e-9),
        "machine_busy": sum(p.machine_busy * p.seconds for p in phases) / max(seconds, 1e-9),
    }


def build_report(phases: list[Phase], monitor_cpu: float, loads: list[tuple[float, float, float]]) -> dict[str, Any]:
    rounds = []
    for number in sorted({p.round for p in phases}):
        by_label = {p.label: p for p in phases if p.round == number}
        on, off = by_label["on"].median_ms, by_label["off"].median_ms
        rounds.append({"round": number, "on_median_ms": on, "off_median_ms": off, "ratio": on / off})
    sides = {label: side_summary([p for p in phases if p.label == label]) for label in ("on", "off")}
    warnings = []
    for label, side in sides.items():
        if side["late_share"] > 0.01:
            warnings.append(f"the client sent {side['late_share']:.1%} of the {label} requests over 1 ms late")
        if side["client_cores"] > 0.8:
            warnings.append(f"the client used {side['client_cores']:.2f} of a core during the {label} phases")
        if side["machine_busy"] > 0.85:
            warnings.append(f"the machine's cores were {side['machine_busy']:.0%} busy during the {label} phases")
    return {
        "rounds": rounds,
        "sides": sides,
        "median_ratio_on_off": statistics.median(r["ratio"] for r in rounds),
        "pooled_median_ratio_on_off": sides["on"]["median_ms"] / sides["off"]["median_ms"],
        "monitor_cpu_us_per_sampled_request": monitor_cpu / max(sides["on"]["requests"], 1) * 1e6,
        "load_average_before": loads[0],
        "load_average_after": loads[1],
        "saturation": warnings,
    }


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"open loop, {args.rate:.0f} single-row requests/s, {args.rounds} rounds x {args.phase_seconds}s per side")
    if args.sample_rate != 1:
        print(f"the 'on' server samples a share of {args.sample_rate} of its requests (0: an A/A run)")
    print("| round | on median ms | off median ms | on/off |")
    print("|---|---|---|---|")
    for r in report["rounds"]:
        print(f"| {r['round']} | {r['on_median_ms']:.3f} | {r['off_median_ms']:.3f} | {r['ratio']:.3f} |")
    print("| sampling | requests | failed | median ms | p90 ms | inference CPU us/req | client CPU us/req | busy |")
    print("|---|---|---|---|---|---|---|---|")
    for label, s in report["sides"].items():
        print(
            f"| {label} | {s['requests']} | {s['failed']} | {s['median_ms']:.3f} | {s['p90_ms']:.3f} | "
            f"{s['inference_cpu_us_per_request']:.0f} | {s['client_cpu_us_per_request']:.0f} | "
            f"{s['machine_busy']:.0%} |"
        )
    for label, s in report["sides"].items():
        threads = ", ".join(f"{n} {us:.0f}" for n, us in s["inference_thread_cpu_us_per_request"].items() if us >= 0.5)
        print(f"inference CPU us/req by thread, {label}: {threads}")
    print(f"median of the rounds' on/off ratios: {report['median_ratio_on_off']:.3f}")
    print(f"on/off of the pooled medians: {report['pooled_median_ratio_on_off']:.3f}")
    print(f"monitor CPU per sampled request: {report['monitor_cpu_us_per_sampled_request']:.0f} us")
    micro = report["sampler_cpu_us_per_request"]
    print(
        f"sampler CPU per request in-process: {micro['offer_us']:.1f} us on the request path, "
        f"{micro['send_side_us']:.1f} us in the sender task"
    )
    print(f"monitor window: {report['drift_window_rows']} rows")
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']}")
    for warning in report["saturation"] or ["none: the client kept its schedule and the cores had idle time"]:
        print(f"saturation: {warning}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--phase-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one phase per side (order alternating)")
    parser.add_argument("--drift-nice", type=int, default=None, help="the monitor's ATELIER_MONITOR_DRIFT_NICE")
    parser.add_argument(
        "--sample-rate", type=float, default=1.0, help="the 'on' server's; 0 makes an A/A run (the noise floor)"
    )
    parser.add_argument(
        "--start-off-first", action="store_true", help="start the 'off' server first (the start order's own effect)"
    )
    parser.add_argument(
        "--pin-servers",
        action="store_true",
        help="run both inference servers on the last core and the client on the others: both sides' CPU "
        "per request is then measured on the same core (unpinned, a process tends to stay on the core it "
        "started on, and the cores of a shared machine differ)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    home = WORK / "home"
    home.mkdir(parents=True)
    services: list[Service] = []
    try:
        monitor, on, off = start_stack(args, home, services)
        cpus = server_cpus(args)
        if cpus:
            os.sched_setaffinity(0, os.sched_getaffinity(0) - cpus)
        payload = np.random.default_rng(1).normal(0, 1, (1, FEATURES)).astype(np.float32).tobytes()
        for server in (on, off):
            asyncio.run(phase(Phase("warm-up", 0), server, args.rate, 1.0, payload))
        loads = [os.getloadavg()]
        monitor_cpu = monitor.cpu_seconds()
        phases = run_phases(on, off, args, payload)
        monitor_cpu = monitor.cpu_seconds() - monitor_cpu
        loads.append(os.getloadavg())
        report = build_report(phases, monitor_cpu, loads)
        report["drift_window_rows"] = _drift_report(monitor.address)
        report["sampler_cpu_us_per_request"] = sampler_cpu_us()
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report, args)
    finally:
        for service in reversed(services):
            service.process.send_signal(signal.SIGTERM)
        for service in reversed(services):
            try:
                service.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.process.kill()


def _drift_report(address: str) -> int:
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


if __name__ == "__main__":
    main()
