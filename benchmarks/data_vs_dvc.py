"""Atelier's data service side by side with DVC 3, on the same machine and the same files.

Both tools are driven through their command lines, one fresh process per operation, as a user
would run them (`python -m atelier.cli.main data ... --json` against a data service started here
on a fresh ATELIER_HOME with SQLite and the local object store; `dvc ...` from its own venv, which
this script creates under benchmarks/.work/dvc-venv). Measured:

1. Commit: N small random files (default 100,000 x 4 KiB in 100 subdirectories) become a dataset
   version: `atelier data push DIR` into a fresh stack vs `dvc add DIR` (hash + copy into the DVC
   cache). Atelier's push already stores the chunks in the object store.
2. Push and pull of those files: Atelier's push is (1); DVC's is `dvc add` + `dvc push` to a local
   remote. A second push of the unchanged directory (a no-op) for both. Then a pull into an empty
   directory: `atelier data pull` vs `dvc pull` with the workspace copy and the DVC cache removed.
3. A big random file (default 1 GiB): push, overwrite 1 MiB in the middle, push again. Bytes the
   second push sent: Atelier's `sentBytes` vs the growth of DVC's remote directory.

Every step's wall time is printed. The page cache is dropped (`sync; echo 3 >
/proc/sys/vm/drop_caches`) before each timed step when this process may do so, else the runs are
warm-cache and the report says so. Results are a markdown table on stdout; `--write-docs` also
replaces the "## Data service vs DVC" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work"
DVC_VENV = WORK / "dvc-venv"
SCRATCH = WORK / "run"
PYTHON = REPO / ".venv" / "bin" / "python"
DOCS = REPO / "docs" / "performance.md"
SECTION = "## Data service vs DVC"
PROJECT = "bench"
# A trivial DVC command that loads most of DVC's code (it inspects the repository, not the data).
DVC_WARM = ("dvc", "doctor", "-q")
COMMAND_TIMEOUT = 3 * 3600.0
MIB = 1024 * 1024
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": MIB, "mb": MIB, "mib": MIB, "g": 1024 * MIB}


# Configuration --------------------------------------------------------------------------------


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
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


# Timing and the record of steps ---------------------------------------------------------------


@dataclass
class Step:
    tool: str
    label: str
    seconds: float


@dataclass
class Run:
    """Everything measured, in order."""

    cold_cache: bool = False
    steps: list[Step] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    # The machine's 1-minute load average after each step: other work slows both tools.
    loads: list[float] = field(default_factory=list)

    def record(self, tool: str, label: str, seconds: float) -> float:
        self.steps.append(Step(tool, label, seconds))
        self.loads.append(os.getloadavg()[0])
        print(f"  {tool:<8} {label:<58} {seconds:9.2f} s", file=sys.stderr, flush=True)
        return seconds


def drop_caches() -> bool:
    """Drop the page cache if allowed; whether it worked."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def run_command(
    command: Sequence[str | Path], *, cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT
) -> str:
    """Run a command to completion; its stdout (stderr is shown if it fails)."""
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise RuntimeError(f"{' '.join(str(c) for c in command)} exited with {done.returncode}")
    return done.stdout


def timed(
    run: Run,
    tool: str,
    label: str,
    command: Sequence[str | Path],
    cwd: Path,
    env: dict[str, str],
    warm: Sequence[str | Path] = (),
) -> str:
    """Run one timed step. Dirty pages are written back first, so no step pays for the previous
    one's writes. When the page cache may be dropped, it is, and then `warm` (a trivial command of
    the same tool) is run untimed, so that the data is read cold but the tool's own code starts
    warm, as it would for a user who runs it every day."""
    os.sync()
    if run.cold_cache:
        drop_caches()
        if warm:
            run_command(warm, cwd=cwd, env=env)
    start = time.perf_counter()
    out = run_command(command, cwd=cwd, env=env)
    run.record(tool, label, time.perf_counter() - start)
    return out


def tree_bytes(root: Path) -> int:
    """Apparent size of all regular files under `root`."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


def tree_files(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


# Test data ------------------------------------------------------------------------------------


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


# Atelier --------------------------------------------------------------------------------------


class Atelier:
    """A data service on a fresh ATELIER_HOME, driven through the `atelier` command line."""

    def __init__(self, home: Path) -> None:
        self.home = home
        # The checkout is not pip-installed into .venv: PYTHONPATH makes `atelier` and `services` importable.
        self.env = {**os.environ, "ATELIER_HOME": str(home), "ATELIER_PROJECT": PROJECT, "PYTHONPATH": str(REPO)}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        address_file = self.home / "run" / "data.json"
        env = {**self.env, "ATELIER_DATA_ADDRESS_FILE": str(address_file), "ATELIER_DATA_PORT": "0"}
        self.home.mkdir(parents=True)
        with open(self.home / "data-service.log", "wb") as log:
            self.process = subprocess.Popen(
                [str(PYTHON), "-m", "services.data"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not address_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the data service did not start; see {self.home / 'data-service.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=60)

    def cli(self, *args: str | Path) -> list[str | Path]:
        return [PYTHON, "-m", "atelier.cli.main", "data", *args, "--json"]

    @property
    def warm(self) -> list[str | Path]:
        return [PYTHON, "-m", "atelier.cli.main", "data", "--help"]

    def push(self, run: Run, label: str, directory: Path, dataset: str) -> dict[str, Any]:
        out = timed(run, "atelier", label, self.cli("push", directory, dataset), SCRATCH, self.env, self.warm)
        result: dict[str, Any] = json.loads(out)
        return result

    def pull(self, run: Run, label: str, dataset: str, directory: Path) -> dict[str, Any]:
        out = timed(run, "atelier", label, self.cli("pull", dataset, directory), SCRATCH, self.env, self.warm)
        result: dict[str, Any] = json.loads(out)
        return result

    def stored_bytes(self) -> int:
        return tree_bytes(self.home / "objects")


@contextmanager
def atelier_stack(home: Path) -> Iterator[Atelier]:
    stack = Atelier(home)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# DVC ------------------------------------------------------------------------------------------


def dvc_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{DVC_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def ensure_dvc() -> str:
    """Create benchmarks/.work/dvc-venv with DVC 3 unless it is there; DVC's version."""
    dvc = DVC_VENV / "bin" / "dvc"
    if dvc.exists():
        version = run_command([dvc, "--version"], cwd=WORK, env=dvc_env()).strip()
        if version.startswith("3."):
            return version
        shutil.rmtree(DVC_VENV)
    WORK.mkdir(parents=True, exist_ok=True)
    print("creating the DVC venv (python3 -m venv; pip install 'dvc>=3,<4')", file=sys.stderr, flush=True)
    run_command(["python3", "-m", "venv", DVC_VENV], cwd=WORK, env=dvc_env(), timeout=600)
    pip: list[str | Path] = [DVC_VENV / "bin" / "python", "-m", "pip", "install", "-q"]
    run_command([*pip, "--upgrade", "pip"], cwd=WORK, env=dvc_env(), timeout=1800)
    run_command([*pip, "dvc>=3,<4"], cwd=WORK, env=dvc_env(), timeout=1800)
    return run_command([dvc, "--version"], cwd=WORK, env=dvc_env()).strip()


class Dvc:
    """A git + DVC scratch repository with a local remote."""

    def __init__(self, repo: Path, remote: Path) -> None:
        self.repo = repo
        self.remote = remote
        self.env = dvc_env()

    def setup(self) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        self.remote.mkdir(parents=True)
        for command in (
            ["git", "init", "-q"],
            ["git", "config", "user.name", "Atelier Benchmark"],
            ["git", "config", "user.email", "benchmark@atelier.invalid"],
            ["dvc", "init", "-q"],
            ["dvc", "config", "core.analytics", "false"],
            ["dvc", "config", "--local", "core.site_cache_dir", str(self.repo.parent / "dvc-site-cache")],
            ["dvc", "remote", "add", "-d", "local", str(self.remote)],
        ):
            run_command(command, cwd=self.repo, env=self.env)

    def timed(self, run: Run, label: str, *args: str) -> str:
        return timed(run, "dvc", label, ["dvc", *args], self.repo, self.env, DVC_WARM)

    def push(self, run: Run, label: str) -> tuple[float, int]:
        """`dvc push`: seconds and bytes the remote grew by."""
        before = tree_bytes(self.remote)
        self.timed(run, label, "push", "-q")
        return run.steps[-1].seconds, tree_bytes(self.remote) - before

    def drop_cache(self) -> None:
        shutil.rmtree(self.repo / ".dvc" / "cache", ignore_errors=True)


# The measurements -----------------------------------------------------------------------------


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


# Report ---------------------------------------------------------------------------------------


def ratio(dvc_value: float, atelier_value: float) -> str:
    return f"{dvc_value / atelier_value:.1f}x" if atelier_value > 0 else "∞"


def human(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def results_table(config: Config, f: dict[str, float]) -> str:
    size = human(config.file_size)
    n = f"{config.files:,} x {size}"
    mib = config.big_bytes // MIB
    dvc_push_total = f["dvc_commit"] + f["dvc_push"]
    dvc_noop = f["dvc_noop_add"] + f["dvc_noop_push"]
    at_pct = 100 * f["at_big_sent"] / config.big_bytes
    dvc_pct = 100 * f["dvc_big_sent"] / config.big_bytes
    best = f", best of {config.commit_runs}" if config.commit_runs > 1 else ""
    rows = [
        (
            "1. Commit " + n + f" files (fresh stack{best} / `dvc add`)",
            f"{f['at_commit']:.2f} s",
            f"{f['dvc_commit']:.2f} s",
            ratio(f["dvc_commit"], f["at_commit"]),
            ">= 10x",
            f["dvc_commit"] >= 10 * f["at_commit"],
        ),
        (
            "2a. Push to storage (Atelier: = 1, chunks land in the local object store; DVC: `dvc add` + `dvc push`)",
            f"{f['at_commit']:.2f} s",
            f"{f['dvc_commit']:.2f} + {f['dvc_push']:.2f} = {dvc_push_total:.2f} s",
            ratio(dvc_push_total, f["at_commit"]),
            ">= 5x",
            dvc_push_total >= 5 * f["at_commit"],
        ),
        (
            "2b. Second push of the unchanged directory (no-op"
            + ("" if not f["at_noop_created"] else ", NOT a no-op!")
            + ")",
            f"{f['at_noop']:.2f} s",
            f"{f['dvc_noop_add']:.2f} + {f['dvc_noop_push']:.2f} = {dvc_noop:.2f} s",
            ratio(dvc_noop, f["at_noop"]),
            "",
            None,
        ),
        (
            "2c. Pull into an empty directory (DVC: workspace copy and cache removed)",
            f"{f['at_pull']:.2f} s",
            f"{f['dvc_pull']:.2f} s",
            ratio(f["dvc_pull"], f["at_pull"]),
            ">= 5x",
            f["dvc_pull"] >= 5 * f["at_pull"],
        ),
        (
            f"3a. First push of a {mib} MiB file (DVC: add + push)",
            f"{f['at_big_first']:.2f} s",
            f"{f['dvc_big_first_add'] + f['dvc_big_first_push']:.2f} s",
            ratio(f["dvc_big_first_add"] + f["dvc_big_first_push"], f["at_big_first"]),
            "",
            None,
        ),
        (
            f"3b. Push after overwriting {config.edit_bytes // MIB} MiB in the middle (DVC: add + push)",
            f"{f['at_big_second']:.2f} s",
            f"{f['dvc_big_second_add'] + f['dvc_big_second_push']:.2f} s",
            ratio(f["dvc_big_second_add"] + f["dvc_big_second_push"], f["at_big_second"]),
            "",
            None,
        ),
        (
            "3c. Bytes sent by that second push, % of the file (DVC: growth of the remote)",
            f"{human(f['at_big_sent'])} = {at_pct:.2f} %",
            f"{human(f['dvc_big_sent'])} = {dvc_pct:.1f} %",
            ratio(f["dvc_big_sent"], f["at_big_sent"]),
            "Atelier <= 2 %",
            at_pct <= 2.0,
        ),
        (
            "CLI process start-up, warm (`atelier data --help` / `dvc doctor`)",
            f"{f['at_startup']:.2f} s",
            f"{f['dvc_startup']:.2f} s",
            ratio(f["dvc_startup"], f["at_startup"]),
            "",
            None,
        ),
    ]
    lines = ["| Measurement | Atelier | DVC | DVC / Atelier | Target | Met |", "|---|---:|---:|---:|---|---|"]
    for label, at, dv, r, target, met in rows:
        shown = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {label} | {at} | {dv} | {r} | {target} | {shown} |")
    return "\n".join(lines)


def steps_table(run: Run) -> str:
    lines = ["| # | Tool | Step | Wall time |", "|---:|---|---|---:|"]
    for index, step in enumerate(run.steps, 1):
        lines.append(f"| {index} | {step.tool} | {step.label} | {step.seconds:.2f} s |")
    return "\n".join(lines)


def machine() -> str:
    memory = next(
        (
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({cpu}), {human(memory)} RAM, Python {sys.version.split()[0]}"


def git_revision() -> str:
    try:
        return run_command(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, env=dict(os.environ)).strip()
    except (RuntimeError, OSError):
        return "unknown"


INTRO = (
    "Measured by `benchmarks/data_vs_dvc.py`. Both tools run through their command lines, one fresh process "
    "per operation (`python -m atelier.cli.main data ... --json`, `dvc ... -q`), on the same files on one local "
    "disk. Atelier talks to a data service started on a fresh `ATELIER_HOME` (SQLite, local object store) over "
    "gRPC on 127.0.0.1; DVC uses a git repository with a local directory remote. Ratios are DVC / Atelier: "
    "above 1 means Atelier is faster or sends less. The targets come from the issue that asked for this "
    "comparison; whether each is met is reported, never asserted."
)


def cache_mode(run: Run, config: Config) -> tuple[str, str]:
    """Title of the report's subsection and how the page cache was handled."""
    if run.cold_cache:
        return "Cold page cache", (
            "page cache dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before every timed step, then the "
            "tool's code warmed by an untimed trivial command (`atelier data --help`, `dvc doctor`): data is "
            "read cold, the tools start warm"
        )
    why = "`--warm-cache`" if config.warm_cache else "dropping it was not permitted"
    return "Warm page cache", f"warm page cache ({why}): files just written or read stay in memory"


def load(run: Run) -> str:
    if not run.loads:
        return "load average not recorded"
    return (
        f"1-minute load average {min(run.loads):.1f} to {max(run.loads):.1f} during the run "
        f"({os.cpu_count()} CPUs; the benchmark alone makes about 2, more means other work shared them)"
    )


def report(run: Run, config: Config, dvc_version: str) -> tuple[str, str]:
    """The subsection title and its body: when, where, how, and both tables."""
    title, cache = cache_mode(run, config)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(
        [
            f"{stamp}; Atelier {git_revision()}, DVC {dvc_version}; {machine()}; {cache}; {load(run)}.",
            "",
            results_table(config, run.figures),
            "",
            "Wall time of each step:",
            "",
            steps_table(run),
        ]
    )
    return title, body


def section_pattern(heading: str, level: str) -> re.Pattern[str]:
    """`heading` up to the next heading of the same or a higher level (or the end)."""
    stop = "|".join("^" + "#" * n + " " for n in range(1, len(level) + 1))
    return re.compile(rf"^{re.escape(heading)}\n.*?(?={stop}|\Z)", re.MULTILINE | re.DOTALL)


def write_docs(title: str, body: str) -> None:
    """Put this run's subsection into the "## Data service vs DVC" section of docs/performance.md,
    keeping the subsection of the other cache mode and every other section."""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    text = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    outer = section_pattern(SECTION, "##")
    found = outer.search(text)
    old = found.group(0) if found else ""
    subsections = re.findall(r"^### .*?(?=^### |\Z)", old, re.MULTILINE | re.DOTALL)
    kept = [sub.strip() for sub in subsections if not sub.startswith(f"### {title}\n")]
    ordered = sorted([*kept, f"### {title}\n\n{body}"])  # "Cold ..." before "Warm ..."
    section = "\n\n".join([SECTION, INTRO, *ordered]) + "\n\n"
    head, tail = (text[: found.start()], text[found.end() :]) if found else (text.rstrip("\n") + "\n\n", "")
    DOCS.write_text((head + section + tail).rstrip("\n") + "\n")


# Main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    dvc_version = ensure_dvc()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    run = Run(cold_cache=not config.warm_cache and drop_caches())
    dvc = Dvc(SCRATCH / "repo", SCRATCH / "dvc-remote")
    dvc.setup()
    try:
        with atelier_stack(SCRATCH / "atelier-home") as atelier:
            startup_overhead(run, atelier, dvc)
            measure_small_files(run, config, atelier, dvc)
            measure_big_file(run, config, atelier, dvc)
    finally:
        if not config.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    title, body = report(run, config, dvc_version)
    print(f"{SECTION}\n\n{INTRO}\n\n### {title}\n\n{body}")
    if config.write_docs:
        write_docs(title, body)
        print(f"wrote '{SECTION} / {title}' in {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
