"""Job traces: what the simulator replays, and the simple CSV format.

CSV header (one job a line; empty optional fields take the defaults)::

    submit_time,duration,gpus,nodes,card_models,min_gpu_memory_gib,precision,project,priority_class,max_runtime

- `submit_time`, `duration`, `max_runtime`: seconds (`max_runtime` defaults to `duration`: exact estimates);
- `gpus`: GPUs in all; `nodes` (optional, default: the fewest nodes of up to 8 GPUs that split `gpus` evenly);
- `card_models`: accepted catalogue models separated by `|` (empty: any);
- `min_gpu_memory_gib`, `precision` (fp32, fp16, tf32, bf16, fp8), `project` (default `default`),
  `priority_class` (default `normal`). An optional `job_id` column names the jobs (default: `job-<line>`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from atelier.errors import InvalidArgument
from atelier.scheduling.request import JobRequest


@dataclass(frozen=True)
class TraceJob:
    """A job of a trace: its request (with submit time and maximum run time) and how long it really runs."""

    request: JobRequest
    duration_s: float


def read_csv_trace(path: str | Path) -> list[TraceJob]:
    """The jobs of a CSV trace (format in the module docstring), in submit order."""
    jobs = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"submit_time", "duration", "gpus"} - set(reader.fieldnames or ())
            if missing:
                raise InvalidArgument(f"{path}: trace CSV lacks the columns {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                try:
                    jobs.append(_job(row, line))
                except (ValueError, OverflowError, InvalidArgument) as error:
                    raise InvalidArgument(f"{path}:{line}: {error}") from None
    except UnicodeDecodeError as error:
        raise InvalidArgument(f"{path}: not a CSV text file ({error})") from None
    return sorted(jobs, key=lambda j: (j.request.submit_time, j.request.job_id))


def _job(row: dict[str, str], line: int) -> TraceJob:
    def text(name: str, default: str = "") -> str:
        return (row.get(name) or "").strip() or default

    duration = _seconds(text("duration"), "duration")
    if duration <= 0:
        raise InvalidArgument(f"duration must be > 0, got {duration}")
    models = [m for m in text("card_models").split("|") if m]
    nodes = text("nodes")
    request = JobRequest.of(
        text("job_id", f"job-{line - 1}"),
        gpus=int(text("gpus")),
        nodes=int(nodes) if nodes else None,
        min_gpu_memory_gib=float(text("min_gpu_memory_gib", "0")),
        precision=text("precision") or None,
        allowed_models=models,
        max_runtime_s=_seconds(text("max_runtime", str(duration)), "max_runtime"),
        priority_class=text("priority_class", "normal"),
        project=text("project", "default"),
        submit_time=_seconds(text("submit_time"), "submit_time"),
    )
    return TraceJob(request, duration)


def _seconds(text: str, column: str) -> float:
    """A time column: a finite number of seconds (nan or inf would never let a replay end)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{column} must be a finite number of seconds >= 0, got {text!r}")
    return value


def replicate(jobs: Sequence[TraceJob], copies: int, offset_s: float) -> list[TraceJob]:
    """`copies` copies of a trace, copy k shifted by k x `offset_s` and its ids suffixed `-k` (deterministic)."""
    out: list[TraceJob] = []
    for k in range(copies):
        for job in jobs:
            request = job.request
            if k:
                request = replace(
                    request, job_id=f"{request.job_id}-{k}", submit_time=request.submit_time + k * offset_s
                )
            out.append(TraceJob(request, job.duration_s))
    return sorted(out, key=lambda j: (j.request.submit_time, j.request.job_id))


def span(jobs: Iterable[TraceJob]) -> float:
    """Seconds from the first submission to the last."""
    times = [job.request.submit_time for job in jobs]
    return max(times) - min(times) if times else 0.0
