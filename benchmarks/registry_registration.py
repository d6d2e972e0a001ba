"""Only the registration step of `benchmarks.registry_vs_mlflow` (its step 1a, 1b or 1f), for profiling.

Starts the data service and the registry on a fresh ATELIER_HOME, registers versions with the
same client worker the full benchmark uses, and prints versions/s, the CPU time each process
used per version (user + system, from /proc), and the machine's load average over the run,
because the machine may be shared. Several `--mode`s run one after the other on the same
services, `--rounds` times over, so that their figures are taken side by side under the same
load. With `--profile DIR`, py-spy samples both services meanwhile and writes their collapsed
stacks (`DIR/registry.txt`, `DIR/data.txt`; one mode). Nothing is asserted.

    .venv/bin/python -m benchmarks.registry_registration --count 2000
    .venv/bin/python -m benchmarks.registry_registration --mode inline batch --rounds 3
    .venv/bin/python -m benchmarks.registry_registration --mode full --count 300 --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from benchmarks.paths import REPO
from benchmarks.registry_vs_mlflow.config import BATCH_SIZE, PROJECT, SCRATCH, Config, Result
from benchmarks.registry_vs_mlflow.measurements import atelier_servers, make_artifact, register_atelier
from benchmarks.registry_vs_mlflow.processes import with_server_cpu
from benchmarks.registry_vs_mlflow.servers import Stack, atelier_stack

PY_SPY = REPO / ".venv" / "bin" / "py-spy"


def config(threads: int, clients: int = 1) -> Config:
    """The full benchmark's configuration, with only what the registration step reads set."""
    return Config(
        threads=threads, clients=clients, register=0, register_full=0, register_batch=0, register_pg=0,
        search_versions=0,
        mlflow_register=0, mlflow_direct=0, mlflow_search_versions=0, search_calls=0, log_points=0, metrics_per_step=1,
        mlflow_sync_points=0, mlflow_async_points=0, step_ms=1.0, postgres=False, fill_directly=False,
        wait=False, write_docs=False, keep=False,
    )  # fmt: skip


def profile(pids: dict[str, int], directory: Path, native: bool) -> list[subprocess.Popen[bytes]]:
    """py-spy recording each service (GIL-holding samples only) until it is interrupted."""
    directory.mkdir(parents=True, exist_ok=True)
    recorders = []
    for name, pid in pids.items():
        output = directory / f"{name.split()[0]}.txt"
        command = [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--gil", "-r", "100", "-o", str(output)]
        command += ["--native"] if native else []
        recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)
    return recorders


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of `pid`, by thread name (numbers dropped, so a pool's
    threads add up: `atelier-blocking`, gRPC's own C++ threads, the event loop's `python`)."""
    totals: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip().rstrip("0123456789_-")
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return totals


def pin_calls(home: Path) -> float:
    """BatchCreatePins calls the data service has handled so far (from its metrics endpoint)."""
    address = json.loads((home / "run" / "data.json").read_text())["metrics"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    wanted = ("grpc_server_handled_total{", 'grpc_method="BatchCreatePins"')
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if all(w in line for w in wanted))


# The model each mode registers into, and what it is called in the full benchmark.
MODELS = {"inline": "search", "full": "full", "batch": "batched"}
STEPS = {"inline": "1a", "full": "1b", "batch": "1f"}


def measure(
    stack: Stack, address: str, artifact: str, mode: str, count: int, start: int, args: argparse.Namespace
) -> Result:
    """Register `count` versions (numbered from `start`) in `mode`, with the services' CPU per version."""
    settings = config(args.threads, args.clients)
    pids = {"registry": stack.pids["registry"], "data service": stack.pids["data"]}
    recorders = profile(pids, args.profile, args.native) if args.profile else []
    load, calls = os.getloadavg()[0], pin_calls(stack.home)
    threads = {name: thread_cpu(pid) for name, pid in pids.items()}
    result = with_server_cpu(
        atelier_servers(stack, "registry"),
        lambda: register_atelier(address, artifact, MODELS[mode], count, start, settings, mode, args.batch),
    )
    result["load_before"] = load
    result["load_after"] = os.getloadavg()[0]
    result["group"] = result["count"] / max(pin_calls(stack.home) - calls, 1)
    result["threads"] = {
        name: {t: (cpu - threads[name].get(t, 0.0)) / max(result["count"], 1) for t, cpu in thread_cpu(pid).items()}
        for name, pid in pids.items()
    }
    for recorder in recorders:
        recorder.send_signal(2)
        recorder.wait(timeout=60)
    return result


def report(mode: str, result: Result, batch: int) -> None:
    cpu = result["cpu"]
    total = sum(cpu.values())
    label = f"{STEPS[mode]} {mode}" + (f" ({batch} a call)" if mode == "batch" else "")
    print(
        f"{label}: {result['count']} versions in {result['seconds']:.1f} s = {result['rate']:.0f}/s "
        f"({result['errors']} errors{': ' + result['first_error'] if result['errors'] else ''}); CPU per version: "
        + ", ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in cpu.items())
        + f" (total {total * 1000:.2f} ms); {result['group']:.1f} versions per BatchCreatePins; "
        + f"load average {result['load_before']:.2f} -> {result['load_after']:.2f}",
        flush=True,
    )
    for name, threads in result["threads"].items():
        shown = sorted(((cpu, t) for t, cpu in threads.items() if cpu > 0), reverse=True)
        print(f"  {name} threads, CPU per version: " + ", ".join(f"{t} {cpu * 1000:.2f} ms" for cpu, t in shown))
    print(json.dumps({"project": PROJECT, "mode": mode, **result}), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=2000, help="versions to register per mode and round (2,000)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--clients", type=int, default=1, help="client processes the threads are spread over (1)")
    parser.add_argument(
        "--mode",
        nargs="+",
        choices=tuple(MODELS),
        default=["inline"],
        help="inline: 1a, one CreateModelVersion each (default); full: 1b, from a run; "
        "batch: 1f, BatchCreateModelVersions of --batch versions",
    )
    parser.add_argument("--batch", type=int, default=BATCH_SIZE, help=f"versions per batch call ({BATCH_SIZE})")
    parser.add_argument("--rounds", type=int, default=1, help="times each mode is measured, in turn (default 1)")
    parser.add_argument("--warmup", type=int, default=200, help="versions registered before the timed ones")
    parser.add_argument("--profile", type=Path, help="write py-spy collapsed stacks of both services here")
    parser.add_argument("--native", action="store_true", help="with --profile: native frames too (gRPC's core)")
    args = parser.parse_args(argv)
    if min(args.count, args.threads, args.batch, args.rounds) < 1 or args.warmup < 0 or args.batch > 1000:
        parser.error("--count, --threads and --rounds must be positive, --batch 1 to 1000, --warmup at least 0")
    if not 1 <= args.clients <= args.threads:
        parser.error(f"--clients must be 1 to --threads ({args.threads}): each client process runs at least one thread")
    if args.profile and (len(args.mode) > 1 or args.rounds > 1):
        parser.error("--profile takes one --mode and one round")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    try:
        with atelier_stack(SCRATCH / "atelier-home") as stack:
            address = stack.start_registry("registry")
            artifact = make_artifact(stack)
            settings = config(args.threads, args.clients)
            for mode in dict.fromkeys(args.mode):
                if args.warmup:
                    warmup = max(args.warmup, args.batch) if mode == "batch" else args.warmup
                    register_atelier(address, artifact, MODELS[mode], warmup, 0, settings, mode, args.batch)
            start = max(args.warmup, args.batch)
            for _ in range(args.rounds):
                for mode in args.mode:
                    report(mode, measure(stack, address, artifact, mode, args.count, start, args), args.batch)
                start += args.count
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
