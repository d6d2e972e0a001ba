"""Chapter 2, data: version real images with `atelier data`, change them, and get the old version back intact."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from demo import digits
from demo.chapter import Chapter, Context
from demo.files import relative_files, verify_identical
from demo.runner import DemoError, Runner

DATASET = "digits"
FIRST_DIR = "digits-v1"
SECOND_DIR = "digits-v2"
PULLED_DIR = "pulled-baseline"
BASELINE_TAG = "baseline"


def run(context: Context) -> None:
    """Push two versions of the digits, inspect them, tag the first, pull it back and check every byte."""
    runner, work = context.runner, context.work_dir
    write_first_version(runner, work / FIRST_DIR)
    push(runner, FIRST_DIR, "1,797 handwritten digits from scikit-learn", expected_number=1)
    changed = write_second_version(runner, work / FIRST_DIR, work / SECOND_DIR)
    push(runner, SECOND_DIR, "shift 5 images, add a train/test split and a README", expected_number=2)
    show_history(runner, changed)
    tag_and_pull(runner, work)
    show_usage(runner, changed)
    context.refs["dataset"] = f"{DATASET}@v2"
    context.refs["dataset.baseline"] = f"{DATASET}@{BASELINE_TAG}"


def write_first_version(runner: Runner, root: Path) -> None:
    """Write the digits as PNG files plus labels.csv."""
    runner.step("Write scikit-learn's handwritten digits as PNG files, one per image, plus labels.csv")
    count = digits.write_dataset(root)
    runner.info(f"wrote {count} files ({count - 1} PNGs + {digits.LABELS_FILE}), {_size(root)} in {root.name}/")


def write_second_version(runner: Runner, first: Path, second: Path) -> list[str]:
    """A copy of the first version with a few files changed and one added; return the paths changed."""
    runner.step("Change a few files: re-render 5 images, add a column to labels.csv, add a README")
    shutil.copytree(first, second)
    changed = digits.revise(second)
    runner.info(f"copied {first.name}/ to {second.name}/ and changed {len(changed)} files there:")
    for path in changed:
        runner.info(f"  {path}")
    return changed


def push(runner: Runner, directory: str, message: str, *, expected_number: int) -> None:
    """Push `directory` as the next version of the dataset and check it became `v<expected_number>`."""
    runner.step(f"Push {directory}/ as version {expected_number} of dataset {DATASET!r} (project default)")
    result = runner.atelier_json("data", "push", directory, DATASET, "-m", message)
    version = _field(result, "version", dict)
    number = int(version.get("number", 0))
    if not result.get("created") or number != expected_number:
        raise DemoError(f"push of {directory} gave version {number} (created={result.get('created')})")
    runner.info(
        f"{version['name']}: {result['files']} files, {_bytes(int(version.get('totalSizeBytes', 0)))}; "
        f"sent {result['sentChunks']} chunks ({_bytes(int(result['sentBytes']))}), digest {version['digest'][:12]}"
    )
    if expected_number > 1:
        runner.info("only the changed files' chunks were sent: the store already held the rest")


def show_history(runner: Runner, changed: list[str]) -> None:
    """The dataset's log, and the diff between its two versions (which must name every changed file)."""
    runner.step(f"The history of {DATASET!r}, newest first")
    runner.atelier("data", "log", DATASET)
    runner.step("What changed from v1 to v2")
    output = runner.atelier("data", "diff", f"{DATASET}@v1", f"{DATASET}@v2")
    missing = [path for path in changed if path not in output]
    if missing:
        raise DemoError(f"the diff of v1 and v2 does not list {missing}")
    runner.ok(f"the diff lists all {len(changed)} changed files")


def tag_and_pull(runner: Runner, work: Path) -> None:
    """Tag v1, pull it by its tag into a fresh directory and compare it with the original files."""
    runner.step(f"Tag v1 as {BASELINE_TAG!r}")
    runner.atelier("data", "tag", f"{DATASET}@v1", BASELINE_TAG)
    runner.step(f"Pull {DATASET}@{BASELINE_TAG} into a fresh directory, {PULLED_DIR}/")
    runner.atelier("data", "pull", f"{DATASET}@{BASELINE_TAG}", PULLED_DIR)
    runner.step(f"Compare every pulled file with the original in {FIRST_DIR}/")
    count = verify_identical(work / FIRST_DIR, work / PULLED_DIR)
    runner.ok(f"verified {count} files byte for byte")


def show_usage(runner: Runner, changed: list[str]) -> None:
    """Storage used: two versions, their shared content stored once (checked for the dataset)."""
    runner.step("Storage used: logical bytes (every version in full) against what the store holds (deduplicated)")
    runner.atelier("data", "usage")
    usage = runner.atelier_json("data", "usage")
    dataset = next((d for d in usage.get("datasets", []) if d.get("resource", "").endswith(f"/{DATASET}")), None)
    if dataset is None:
        raise DemoError(f"`atelier data usage` does not list the dataset {DATASET!r}")
    logical, stored = int(dataset.get("logicalBytes", 0)), int(dataset.get("deduplicatedBytes", 0))
    if not 0 < stored < logical:
        raise DemoError(f"{DATASET!r} stores {stored} bytes for {logical} logical bytes: nothing was deduplicated")
    runner.ok(
        f"{DATASET}: {_bytes(logical)} in its two versions, stored as {_bytes(stored)} "
        f"({stored / logical:.0%}): v2 shares all but {len(changed)} of its files with v1"
    )


def _field(mapping: Any, key: str, kind: type) -> Any:
    """`mapping[key]`, which must be a `kind`; a DemoError otherwise."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, kind):
        raise DemoError(f"expected {key!r} ({kind.__name__}) in the CLI's JSON output, got {mapping!r:.200}")
    return value


def _size(root: Path) -> str:
    return _bytes(sum((root / path).stat().st_size for path in relative_files(root)))


def _bytes(count: int) -> str:
    """Bytes in KiB, the unit this small dataset reads best in."""
    return f"{count} B" if count < 1024 else f"{count / 1024:.1f} KiB"


CHAPTER = Chapter(
    title="Data",
    summary="Version 1,797 real handwritten digits, change a few, and get the first version back byte for byte.",
    run=run,
)
