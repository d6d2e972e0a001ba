"""Only the registration step of `registry_vs_mlflow.py` (its step 1a or 1b), for profiling.

Starts the data service and the registry on a fresh ATELIER_HOME, registers versions with the
same client worker the full benchmark uses, and prints versions/s, the CPU time each process
used per version (user + system, from /proc), and the machine's load average over the run,
because the machine may be shared. With `--profile DIR`, py-spy samples both services meanwhile
and writes their collapsed stacks (`DIR/registry.txt`, `DIR/data.txt`). Nothing is asserted.

    .venv/bin/python -m benchmarks.registry_registration --count 2000
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

from benchmarks.registry_vs_mlflow import (
    PROJECT,
    REPO,
    SCRATCH,
    Config,
    atelier_servers,
    atelier_stack,
    make_artifact,
    register_atelier,
    with_server_cpu,
)

PY_SPY = REPO / ".venv" / "bin" / "py-spy"


def config(threads: int) -> Config:
    """The full benchmark's configuration, with only what the registration step reads set."""
    return Config(
        threads=threads, register=0, register_full=0, register_pg=0, search_versions=0, mlflow_register=0,
        mlflow_direct=0, mlflow_search_versions=0, search_calls=0, log_points=0, metrics_per_step=1,
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=2000, help="versions to register (default 2,000)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument(
        "--mode", choices=("inline", "full"), default="inline", help="inline: 1a (default); full: 1b, from a run"
    )
    parser.add_argument("--warmup", type=int, default=200, help="versions registered before the timed ones")
    parser.add_argument("--profile", type=Path, help="write py-spy collapsed stacks of both services here")
    parser.add_argument("--native", action="store_true", help="with --profile: native frames too (gRPC's core)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--count and --threads must be positive, --warmup at least 0")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    settings = config(args.threads)
    try:
        with atelier_stack(SCRATCH / "atelier-home") as stack:
            address = stack.start_registry("registry")
            artifact = make_artifact(stack)
            servers = atelier_servers(stack, "registry")
            model = "search" if args.mode == "inline" else "full"
            if args.warmup:
                register_atelier(address, artifact, model, args.warmup, 0, settings, args.mode)
            pids = {"registry": stack.pids["registry"], "data service": stack.pids["data"]}
            recorders = profile(pids, args.profile, args.native) if args.profile else []
            load, calls = os.getloadavg()[0], pin_calls(stack.home)
            threads = {name: thread_cpu(pid) for name, pid in pids.items()}
            result = with_server_cpu(
                servers,
                lambda: register_atelier(address, artifact, model, args.count, args.warmup, settings, args.mode),
            )
            result["load_before"] = load
            result["load_after"] = os.getloadavg()[0]
            result["group"] = result["count"] / max(pin_calls(stack.home) - calls, 1)
            result["threads"] = {
                name: {t: (cpu - threads[name].get(t, 0.0)) / result["count"] for t, cpu in thread_cpu(pid).items()}
                for name, pid in pids.items()
            }
            for recorder in recorders:
                recorder.send_signal(2)
                recorder.wait(timeout=60)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    cpu = result["cpu"]
    total = sum(cpu.values())
    print(
        f"{args.mode}: {result['count']} versions in {result['seconds']:.1f} s = {result['rate']:.0f}/s "
        f"({result['errors']} errors{': ' + result['first_error'] if result['errors'] else ''}); CPU per version: "
        + ", ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in cpu.items())
        + f" (total {total * 1000:.2f} ms); {result['group']:.1f} versions per BatchCreatePins; "
        + f"load average {result['load_before']:.2f} -> {result['load_after']:.2f}"
    )
    for name, threads in result["threads"].items():
        shown = sorted(((cpu, t) for t, cpu in threads.items() if cpu > 0), reverse=True)
        print(f"  {name} threads, CPU per version: " + ", ".join(f"{t} {cpu * 1000:.2f} ms" for cpu, t in shown))
    print(json.dumps({"project": PROJECT, **result}), file=sys.stderr)


if __name__ == "__main__":
    main()
