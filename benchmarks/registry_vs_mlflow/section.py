"""The "## Registry vs MLflow" text: the run's header, how it was measured, the load, docs/performance.md."""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path
from typing import Any

from benchmarks.paths import DOCS

from .config import BATCH_SIZE, BATCHES, FOREIGN_LIMIT, LRS, MLFLOW_FILTER, SECTION, Config
from .processes import run_command
from .report import Report
from .tables import breakdown_text, cpu_table, phases_table, results_table


def machine() -> str:
    memory = next(
        (
            int(line.split()[1]) // 1024**2
            for line in Path("/proc/meminfo").read_text().splitlines()
            if "MemTotal" in line
        ),
        0,
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({cpu}), {memory} GiB RAM, Python {sys.version.split()[0]}"


def git_revision() -> str:
    try:
        return run_command(["git", "rev-parse", "--short", "HEAD"], dict(os.environ), 30).strip()
    except (RuntimeError, OSError):
        return "unknown"


def method_notes(f: dict[str, Any], config: Config) -> list[str]:
    fill = f.get("ml_fill")
    filled = f" ({fill['rate']:.0f} versions/s)" if fill else ""
    direct = f.get("at_fill_direct")
    atelier_fill = (
        f"the first {f['at_fill_from']:,} over gRPC with the 1a path, the other {direct['count']:,} written straight "
        f"into its SQLite file by the registry's own group writer, without pins, at {direct['rate']:,.0f}/s "
        "(`--fill-directly`)"
        if direct
        else "filled over gRPC with the 1a path"
    )
    return [
        "- Atelier: `python -m services.data` and `python -m services.registry` on a fresh `ATELIER_HOME` (SQLite, "
        "WAL, synchronous=NORMAL, the default; the registry's 8 worker threads), clients "
        "`atelier.client.RegistryClient` over gRPC on 127.0.0.1. Every version refers to one artifact stored once; "
        "the registry checks it with the data service once, and pins it for each version: registrations that "
        "arrive together are pinned in one BatchCreatePins call and inserted in one transaction. 1f sends "
        f"{BATCH_SIZE} versions per BatchCreateModelVersions call (all or none; the client builds each call's "
        "messages inside the measurement); MLflow has no call that registers several versions.",
        "- MLflow: `mlflow server --backend-store-uri sqlite:///... --host 127.0.0.1 --port P` with its default "
        "workers, `MlflowClient(tracking_uri=url)`; `create_model_version` keeps its default "
        "`await_creation_for`. Its versions get metrics the only way MLflow has: through the run "
        "(create_run, log_batch with the metrics and params, create_model_version(source=<run artifact uri>/model, "
        "run_id)). Runs are not terminated in either tool.",
        f"- Each measurement's client is a fresh process with {config.threads} threads sharing one client; the "
        "versions' values come from a seeded generator shared by both tools (val_accuracy and loss uniform in "
        f"[0, 1), lr one of {', '.join(LRS)}, batch one of {', '.join(BATCHES)}).",
        f"- Search: Atelier holds {f['at_search_count']:,} versions in the single model `search` ({atelier_fill}); "
        f"MLflow {f['ml_search_count']:,} in the single model `search`, filled by "
        f"MlflowClient directly on SQLite{filled}, then served by `mlflow server` for the timed calls. MLflow "
        "refuses `params.lr < '0.01'` (params compare as strings: `=`, `!=`, `LIKE`, `ILIKE` only) and cannot "
        f'filter or order model versions by metrics, so it runs `search_runs(filter_string="{MLFLOW_FILTER}", '
        'order_by=["metrics.val_accuracy DESC"], max_results=1)` (the same set for these lr values) and then '
        "`search_model_versions(\"run_id = '...'\")`.",
        f"- Logging: one run, {config.metrics_per_step} metrics per step after `busy()` work calibrated to "
        f"~{config.step_ms:g} ms of pure-Python CPU per step (it holds the GIL); `time.perf_counter()` around each "
        "logging call. Atelier: `atelier.start_run(..., capture_code=False)`, `run.log_metrics` (appends to "
        "in-memory arrays; a background thread sends column-wise batches), `run.end()`. MLflow: `mlflow.start_run`, "
        f"`mlflow.log_metrics(..., synchronous=...)` against the tracking server, synchronous for "
        f"{config.mlflow_sync_points:,} points only (one HTTP request per call) and with `synchronous=False` for "
        f"{config.mlflow_async_points:,}.",
    ]


INTRO = (
    "Measured by `benchmarks/registry_vs_mlflow/`: Atelier's registry service and MLflow 3 on the same "
    'machine, both as servers on 127.0.0.1 backed by SQLite, driven by their own Python clients. "Atelier '
    'advantage" is how many times faster (or less blocked) Atelier is. The targets come from the issue that '
    "asked for this comparison; whether each is met is reported, never asserted."
)


def report_body(report: Report, config: Config, mlflow_version: str) -> str:
    f = report.figures
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"{stamp}; Atelier {git_revision()}, MLflow {mlflow_version}; {machine()}.",
            "",
            results_table(f, config),
            "",
            "How it was measured:",
            "",
            *method_notes(f, config),
            "",
            "Mean latency of each call while registering:",
            "",
            phases_table(f),
            "",
            "CPU used per registered version (user + system time of each process over the measurement):",
            "",
            cpu_table(f, os.cpu_count() or 1),
            "",
            "Where the time of Atelier's best-version query goes:",
            "",
            breakdown_text(f),
            "",
            load_text(report),
        ]
    )


def load_text(report: Report) -> str:
    """How busy the machine was with other work during each step."""
    cores = os.cpu_count() or 1
    loaded = [label for label, load, others in report.loads if load > FOREIGN_LIMIT or others]
    verdict = (
        f"**Measured under load**: other work took more than {FOREIGN_LIMIT} core on average during "
        f"{len(loaded)} of {len(report.loads)} steps; their figures are indicative (wall-clock rates and "
        "latencies suffer most; CPU per version less so)."
        if loaded
        else f"The machine was quiet: other work took at most {FOREIGN_LIMIT} core during every step."
    )
    lines = [
        verdict,
        "",
        f"| Step | Other work (cores of {cores}, mean) |",
        "|---|---:|",
        *(
            f"| {label} | {load:.2f}{' (another benchmark ran)' if others else ''} |"
            for label, load, others in report.loads
        ),
    ]
    return "\n".join(lines)


def write_docs(body: str) -> None:
    """Replace (or add) the "## Registry vs MLflow" section of docs/performance.md, keeping the rest."""
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    text = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    section = f"{SECTION}\n\n{INTRO}\n\n{body}\n\n"
    found = re.search(rf"^{re.escape(SECTION)}\n.*?(?=^# |^## |\Z)", text, re.MULTILINE | re.DOTALL)
    text = text[: found.start()] + section + text[found.end() :] if found else text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text.rstrip("\n") + "\n")
