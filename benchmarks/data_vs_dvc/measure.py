"""The test data and the measured steps: many small files, a big file edited in the middle, start-up."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .config import DVC_WARM, MIB, SCRATCH, Config
from .timing import Run, run_command
from .tools import Atelier, Dvc, atelier_stack


def make_small_files(root: Path, config: Config) -> None:
    """`config.files` random files spread evenly over `config.subdirs` subdirectories."""
    for index in range(config.files):
        folder = root / f"d{index % config.subdirs:03d}"
        if index < config.subdirs:
            folder.mkdir(parents=True)
        (folder / f"f{index:06d}.bin").write_bytes(os.urandom(config.file_size))


def make_big_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:
        for start in range(0, size, 64 * MIB):
            handle.write(os.urandom(min(64 * MIB, size - start)))


def overwrite_middle(path: Path, size: int, length: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(size // 2 - length // 2)
        handle.write(os.urandom(length))


def same_trees(left: Path, right: Path) -> bool:
    """Whether two directories hold the same relative paths with the same bytes."""

    def listing(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    names = listing(left)
    if names != listing(right):
        return False
    return all((left / n).read_bytes() == (right / n).read_bytes() for n in names)


def measure_small_files(run: Run, config: Config, atelier: Atelier, dvc: Dvc) -> None:
    """(1) and (2): commit, push, no-op push and pull of many small files."""
    data = dvc.repo / "files"
    make_small_files(data, config)
    f = run.figures
    first = atelier.push(run, f"push {config.files} files into a fresh stack", data, "files")
    f["at_commit"] = run.steps[-1].seconds
    f["at_commit_sent"] = first["sentBytes"]
    repeat_commit(run, config, data)
    again = atelier.push(run, "push the same directory again (no-op)", data, "files")
    f["at_noop"] = run.steps[-1].seconds
    f["at_noop_created"] = float(bool(again["created"]))
    dvc.timed(run, f"dvc add files ({config.files} files)", "add", "-q", "files")
    f["dvc_commit"] = run.steps[-1].seconds
    f["dvc_push"], f["dvc_push_bytes"] = dvc.push(run, "dvc push to the local remote")
    dvc.timed(run, "dvc add files (unchanged, no-op)", "add", "-q", "files")
    f["dvc_noop_add"] = run.steps[-1].seconds
    f["dvc_noop_push"], _ = dvc.push(run, "dvc push (unchanged, no-op)")
    pulled = SCRATCH / "atelier-pull"
    result = atelier.pull(run, "pull into an empty directory", "files@latest", pulled)
    f["at_pull"] = run.steps[-1].seconds
    f["at_pull_files"] = result["fetchedFiles"]
    shutil.copytree(data, SCRATCH / "reference")
    shutil.rmtree(data)
    dvc.drop_cache()
    dvc.timed(run, "dvc pull (workspace copy and cache removed)", "pull", "-q")
    f["dvc_pull"] = run.steps[-1].seconds
    check_pulled(SCRATCH / "reference", pulled, data)


def repeat_commit(run: Run, config: Config, data: Path) -> None:
    """Further pushes of the small files, each into a fresh stack; the commit figure is the best."""
    times = [run.figures["at_commit"]]
    for attempt in range(2, config.commit_runs + 1):
        home = SCRATCH / f"atelier-home-{attempt}"
        with atelier_stack(home) as stack:
            stack.push(run, f"push {config.files} files into a fresh stack (run {attempt})", data, "files")
            times.append(run.steps[-1].seconds)
        shutil.rmtree(home)
    run.figures["at_commit"] = min(times)


def check_pulled(reference: Path, *pulled: Path) -> None:
    """Both pulls must have restored exactly the original files (a correctness check, not timed)."""
    for tree in pulled:
        if not same_trees(reference, tree):
            raise RuntimeError(f"{tree} does not hold the pushed files")
    shutil.rmtree(reference)


def measure_big_file(run: Run, config: Config, atelier: Atelier, dvc: Dvc) -> None:
    """(3): a big file, 1 MiB of it overwritten, pushed again."""
    folder = dvc.repo / "big"
    mib = config.big_bytes // MIB
    make_big_file(folder / "blob.bin", config.big_bytes)
    f = run.figures
    atelier.push(run, f"push a {mib} MiB file", folder, "big")
    f["at_big_first"] = run.steps[-1].seconds
    dvc.timed(run, f"dvc add big ({mib} MiB file)", "add", "-q", "big")
    f["dvc_big_first_add"] = run.steps[-1].seconds
    f["dvc_big_first_push"], _ = dvc.push(run, f"dvc push ({mib} MiB file)")
    overwrite_middle(folder / "blob.bin", config.big_bytes, config.edit_bytes)
    stored_before = atelier.stored_bytes()
    second = atelier.push(run, f"push after overwriting {config.edit_bytes // MIB} MiB in the middle", folder, "big")
    f["at_big_second"] = run.steps[-1].seconds
    f["at_big_sent"] = second["sentBytes"]
    f["at_big_stored"] = atelier.stored_bytes() - stored_before
    dvc.timed(run, "dvc add big (after the edit)", "add", "-q", "big")
    f["dvc_big_second_add"] = run.steps[-1].seconds
    f["dvc_big_second_push"], f["dvc_big_sent"] = dvc.push(run, "dvc push (after the edit)")


def startup_overhead(run: Run, atelier: Atelier, dvc: Dvc) -> None:
    """Time of a trivial command of each CLI, warm: the per-process floor of every figure above."""
    for _ in range(2):
        run_command(atelier.warm, cwd=SCRATCH, env=atelier.env)
        run_command(DVC_WARM, cwd=dvc.repo, env=dvc.env)
    start = time.perf_counter()
    run_command(atelier.warm, cwd=SCRATCH, env=atelier.env)
    run.figures["at_startup"] = run.record(
        "atelier", "atelier data --help (process start-up, warm)", time.perf_counter() - start
    )
    start = time.perf_counter()
    run_command(DVC_WARM, cwd=dvc.repo, env=dvc.env)
    run.figures["dvc_startup"] = run.record("dvc", "dvc doctor (process start-up, warm)", time.perf_counter() - start)
