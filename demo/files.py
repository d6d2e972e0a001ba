"""Comparing directory trees file by file, byte for byte."""

from __future__ import annotations

from pathlib import Path

from demo.runner import DemoError

_SHOWN = 5
"""How many differing paths an error names."""


def relative_files(root: Path) -> set[str]:
    """Every regular file under `root`, as a POSIX path relative to it."""
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def verify_identical(expected: Path, actual: Path) -> int:
    """Check both trees hold the same files with the same bytes; return how many files were compared."""
    wanted, got = relative_files(expected), relative_files(actual)
    if wanted != got:
        missing, extra = sorted(wanted - got), sorted(got - wanted)
        raise DemoError(f"{actual} differs from {expected}: missing {missing[:_SHOWN]}, unexpected {extra[:_SHOWN]}")
    different = [path for path in sorted(wanted) if (expected / path).read_bytes() != (actual / path).read_bytes()]
    if different:
        raise DemoError(f"{len(different)} files of {actual} differ from {expected}, e.g. {different[:_SHOWN]}")
    return len(wanted)
