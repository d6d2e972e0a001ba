"""The command line: `python -m benchmarks.drift_sampling`, the stack started, the phases run, the report."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Sequence

import numpy as np

from .config import FEATURES, WORK, parse_args, server_cpus
from .load import Phase, phase, run_phases
from .report import build_report, print_report
from .sampler import sampler_cpu_us
from .services import Service, stop_all
from .stack import drift_window_rows, start_stack


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
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
        report["drift_window_rows"] = drift_window_rows(monitor.address)
        report["sampler_cpu_us_per_request"] = sampler_cpu_us()
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report, args)
    finally:
        stop_all(services)


if __name__ == "__main__":
    main()
