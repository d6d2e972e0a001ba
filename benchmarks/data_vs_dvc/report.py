"""The report: the results and steps tables, the machine, and the section of docs/performance.md."""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path

from benchmarks.paths import DOCS, REPO

from .config import MIB, SECTION, Config
from .timing import Run, run_command


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
    "Measured by `python -m benchmarks.data_vs_dvc`. Both tools run through their command lines, one fresh "
    "process per operation (`python -m atelier.cli.main data ... --json`, `dvc ... -q`), on the same files on "
    "one local disk. Atelier talks to a data service started on a fresh `ATELIER_HOME` (SQLite, local object "
    "store) over gRPC on 127.0.0.1; DVC uses a git repository with a local directory remote. Ratios are DVC / "
    "Atelier: above 1 means Atelier is faster or sends less. The targets come from the issue that asked for "
    "this comparison; whether each is met is reported, never asserted."
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
    mode, cache = cache_mode(run, config)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"{mode} ({stamp}, commit {git_revision()})"
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
    """Put this run's subsection first in the "## Data service vs DVC" section of docs/performance.md (newest
    first), keeping every earlier run's subsection, with what was written about it, and every other section."""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    text = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    outer = section_pattern(SECTION, "##")
    found = outer.search(text)
    old = found.group(0) if found else ""
    subsections = re.findall(r"^### .*?(?=^### |\Z)", old, re.MULTILINE | re.DOTALL)
    kept = [sub.strip() for sub in subsections if not sub.startswith(f"### {title}\n")]
    section = "\n\n".join([SECTION, INTRO, f"### {title}\n\n{body}", *kept]) + "\n\n"
    head, tail = (text[: found.start()], text[found.end() :]) if found else (text.rstrip("\n") + "\n\n", "")
    DOCS.write_text((head + section + tail).rstrip("\n") + "\n")
