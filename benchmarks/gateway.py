"""The gateway's cost: REST through the gateway under load, and gRPC through the front door vs direct.

Starts the stack as `atelier up` does (every service, then the gateway, each its own process) in a
fresh home under `benchmarks/.work/gateway`, creates one project, then:

1. REST: `GET /v1/projects/bench` (a small resource) through the gateway under closed-loop load from
   `wrk` (Debian's package; `apt-get install wrk`): requests per second and p50/p99 latency, with the
   CPU time the gateway and the data service used per request;
2. gRPC: the same `GetProject`, one call at a time, straight to the data service and through the front
   door, alternating in rounds so both see the same machine load: p50/p99 of each and the p50 the front
   door adds, with the gateway's CPU time per call (its process and its children: nginx, when nginx
   serves the front door).

`--front-door python|nginx|auto` picks what serves the front door's port (the gateway's
`ATELIER_GATEWAY_FRONT_DOOR_PROXY`; `auto`, the default, is nginx when it is installed).

The services run with auth off (`ATELIER_AUTH=off`, loopback only): this measures the gateway's
forwarding, not token checks. The table ends with the issue's targets and the measured/target ratio.

    .venv/bin/python benchmarks/gateway.py                  # 10 s of REST load, 5 x 400 gRPC calls a side
    .venv/bin/python benchmarks/gateway.py --duration 5 --calls 200
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atelier.client import DataClient  # noqa: E402
from atelier.data.v1 import data_service_pb2 as rpc  # noqa: E402
from atelier.data.v1 import data_service_pb2_grpc as rpc_grpc  # noqa: E402
from atelier.stack import local  # noqa: E402
from atelier.stack.addresses import address_file, read_address_file  # noqa: E402

WORK = ROOT / "benchmarks" / ".work" / "gateway"
PROJECT = "bench"
REST_RATE_TARGET = 2000.0
REST_P99_TARGET_MS = 20.0
GRPC_ADDED_P50_TARGET_MS = 0.3
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class RestResult:
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    gateway_cpu_ms: float
    data_cpu_ms: float


@dataclass
class GrpcResult:
    direct: list[float]
    door: list[float]
    gateway_cpu_ms: float
    """Gateway CPU time per call through the front door."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its living descendants (the gateway's nginx)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # gone meanwhile
    tree, found = {pid}, True
    while found:
        found = False
        for child, fields in stats.items():
            if child not in tree and int(fields[1]) in tree:
                tree.add(child)
                found = True
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def pid_of(home: Path, name: str) -> int:
    published = read_address_file(address_file(home, name))
    if published is None or published.pid is None:
        raise SystemExit(f"the {name} service published no pid in {address_file(home, name)}")
    return published.pid


def wrk(url: str, seconds: float, connections: int, threads: int) -> tuple[float, float, float, int, int]:
    """Requests/s, p50 ms, p99 ms, requests and errors of one wrk run."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    for kind in ("connect", "read", "write", "timeout"):
        found = re.search(rf"{kind} (\d+)", output)
        errors += int(found.group(1)) if found else 0

    def percentile(p: int) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    return rate, percentile(50), percentile(99), requests, errors


def rest_load(home: Path, http: str, seconds: float, connections: int, threads: int) -> RestResult:
    url = f"http://{http}/v1/projects/{PROJECT}"
    wrk(url, 2, connections, threads)  # warm-up
    gateway, data = pid_of(home, "gateway"), pid_of(home, "data")
    before = cpu_seconds(gateway), cpu_seconds(data)
    rate, p50, p99, requests, errors = wrk(url, seconds, connections, threads)
    used = cpu_seconds(gateway) - before[0], cpu_seconds(data) - before[1]
    per = 1000 / max(requests, 1)
    return RestResult(rate, p50, p99, requests, errors, used[0] * per, used[1] * per)


def timed_calls(stub: rpc_grpc.DataServiceStub, calls: int) -> list[float]:
    request = rpc.GetProjectRequest(name=f"projects/{PROJECT}")
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        stub.GetProject(request, timeout=10)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def grpc_calls(home: Path, data: str, door: str, calls: int, rounds: int) -> GrpcResult:
    gateway = pid_of(home, "gateway")
    direct: list[float] = []
    through: list[float] = []
    gateway_cpu = 0.0
    with grpc.insecure_channel(data) as data_channel, grpc.insecure_channel(door) as door_channel:
        data_stub, door_stub = rpc_grpc.DataServiceStub(data_channel), rpc_grpc.DataServiceStub(door_channel)
        timed_calls(data_stub, 100)  # warm-up: connections, code paths
        timed_calls(door_stub, 100)
        for _ in range(rounds):
            direct += timed_calls(data_stub, calls)
            before = cpu_seconds(gateway)
            through += timed_calls(door_stub, calls)
            gateway_cpu += cpu_seconds(gateway) - before
    return GrpcResult(direct, through, gateway_cpu * 1000 / len(through))


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def report(rest: RestResult, calls: GrpcResult, args: argparse.Namespace) -> str:
    direct50, door50 = statistics.median(calls.direct), statistics.median(calls.door)
    added = door50 - direct50
    rows = [
        "| measurement | value | target | measured / target |",
        "|---|---|---|---|",
        f"| REST GET through the gateway: requests/s | {rest.rate:,.0f} | >= {REST_RATE_TARGET:,.0f} "
        f"| {rest.rate / REST_RATE_TARGET:.2f} |",
        f"| REST GET: p50 latency | {rest.p50_ms:.2f} ms | | |",
        f"| REST GET: p99 latency | {rest.p99_ms:.2f} ms | < {REST_P99_TARGET_MS:g} ms "
        f"| {rest.p99_ms / REST_P99_TARGET_MS:.2f} |",
        f"| REST GET: errors | {rest.errors} of {rest.requests:,} | 0 | |",
        f"| REST GET: CPU per request, gateway / data service | {rest.gateway_cpu_ms:.2f} / "
        f"{rest.data_cpu_ms:.2f} ms | | |",
        f"| gRPC GetProject direct: p50 / p99 | {direct50:.3f} / {p99(calls.direct):.3f} ms | | |",
        f"| gRPC GetProject through the front door: p50 / p99 | {door50:.3f} / {p99(calls.door):.3f} ms | | |",
        f"| gRPC: p50 added by the front door | {added:.3f} ms | < {GRPC_ADDED_P50_TARGET_MS:g} ms "
        f"| {added / GRPC_ADDED_P50_TARGET_MS:.2f} |",
        f"| gRPC: gateway CPU per call through the front door | {calls.gateway_cpu_ms:.3f} ms | | |",
    ]
    setup = (
        f"wrk {args.threads} threads, {args.connections} connections, {args.duration:g} s (after 2 s of warm-up); "
        f"gRPC: {args.rounds} rounds of {args.calls} sequential calls a side (Python sync stub), alternating; "
        f"front door: {args.served_by}; {os.cpu_count()} CPUs visible; load average before the run {args.load_before}"
    )
    return "\n".join([*rows, "", setup])


def front_door_proxy(home: Path) -> str:
    """What serves the front door, as the gateway's log says."""
    found = re.search(r"front door \((\w+)\) serving", (home / "logs" / "gateway.log").read_text(errors="replace"))
    return found.group(1) if found else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of REST load (default 10).")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (closed loop; default 16).")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1).")
    parser.add_argument("--calls", type=int, default=400, help="gRPC calls a side per round (default 400).")
    parser.add_argument("--rounds", type=int, default=5, help="Alternating gRPC rounds (default 5).")
    parser.add_argument(
        "--front-door", choices=("auto", "nginx", "python"), default="auto", help="What serves the front door."
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install wrk (Debian's package)")
    args.load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    shutil.rmtree(WORK, ignore_errors=True)
    home = WORK / "home"
    os.environ["ATELIER_AUTH"] = "off"
    os.environ["ATELIER_GATEWAY_FRONT_DOOR_PROXY"] = args.front_door
    started = time.monotonic()
    local.up(home, base_port=0, detach=True, timeout=180)
    try:
        print(f"stack started in {time.monotonic() - started:.1f}s", file=sys.stderr)
        gateway = read_address_file(address_file(home, "gateway"))
        data = read_address_file(address_file(home, "data"))
        if gateway is None or data is None:
            raise SystemExit("the stack published no gateway or data address")
        client = DataClient.at(data.address)
        client.ensure_project(PROJECT)
        client.close()
        args.served_by = front_door_proxy(home)
        rest = rest_load(home, gateway.http, args.duration, args.connections, args.threads)
        calls = grpc_calls(home, data.address, gateway.address, args.calls, args.rounds)
    finally:
        local.down(home)
    print(report(rest, calls, args))


if __name__ == "__main__":
    main()
