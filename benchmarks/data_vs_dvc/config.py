"""Paths, constants and the Config of a run, from its command line."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.paths import WORK

from . import __doc__ as overview

DVC_VENV = WORK / "dvc-venv"
SCRATCH = WORK / "run"
SECTION = "## Data service vs DVC"
PROJECT = "bench"
# A trivial DVC command that loads most of DVC's code (it inspects the repository, not the data).
DVC_WARM = ("dvc", "doctor", "-q")
COMMAND_TIMEOUT = 3 * 3600.0
MIB = 1024 * 1024
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": MIB, "mb": MIB, "mib": MIB, "g": 1024 * MIB}


@dataclass(frozen=True)
class Config:
    files: int
    file_size: int
    subdirs: int
    big_bytes: int
    edit_bytes: int
    warm_cache: bool
    write_docs: bool
    keep: bool
    commit_runs: int = 1


def parse_size(text: str) -> int:
    """`4096`, `4KiB`, `4k`, `1MiB`... as bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 4096, 4KiB, 1MiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.data_vs_dvc", description=overview.splitlines()[0] if overview else None
    )
    parser.add_argument("--files", type=int, help="number of small files (default 100000; --quick 10000)")
    parser.add_argument("--file-size", type=parse_size, default=4096, help="size of each small file (default 4KiB)")
    parser.add_argument("--subdirs", type=int, default=100, help="subdirectories the small files are spread over")
    parser.add_argument("--big-mib", type=int, help="size of the big file in MiB (default 1024; --quick 128)")
    parser.add_argument("--edit-mib", type=int, default=1, help="MiB overwritten in the middle of the big file")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 files and a 128 MiB big file")
    parser.add_argument("--write-docs", action="store_true", help=f"replace '{SECTION}' in docs/performance.md")
    parser.add_argument("--warm-cache", action="store_true", help="do not drop the page cache before each step")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data under benchmarks/.work/run")
    parser.add_argument(
        "--commit-runs",
        type=int,
        default=1,
        help="push the small files into this many fresh stacks and report the best (a shared machine's load varies)",
    )
    args = parser.parse_args(argv)
    files = args.files if args.files is not None else (10_000 if args.quick else 100_000)
    big_mib = args.big_mib if args.big_mib is not None else (128 if args.quick else 1024)
    if files < 1 or args.subdirs < 1 or big_mib < 2 * args.edit_mib or args.edit_mib < 1 or args.commit_runs < 1:
        parser.error(
            "need --files >= 1, --subdirs >= 1, --edit-mib >= 1, --commit-runs >= 1 and --big-mib >= 2 x --edit-mib"
        )
    return Config(
        files=files,
        file_size=args.file_size,
        subdirs=args.subdirs,
        big_bytes=big_mib * MIB,
        edit_bytes=args.edit_mib * MIB,
        warm_cache=args.warm_cache,
        write_docs=args.write_docs,
        keep=args.keep,
        commit_runs=args.commit_runs,
    )
