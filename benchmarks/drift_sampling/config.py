"""Paths, the model's shape, and the command line's options."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from benchmarks.paths import WORK as BENCHMARKS_WORK

from . import __doc__ as overview

WORK = BENCHMARKS_WORK / "drift"
FEATURES = 64
CLASSES = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.drift_sampling",
        description=overview,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    return parser.parse_args(argv)


def server_cpus(args: argparse.Namespace) -> set[int] | None:
    """With --pin-servers: the last core, for both inference servers (one is busy at a time)."""
    return {max(os.sched_getaffinity(0))} if args.pin_servers else None
