"""Readers for the Alibaba GPU cluster trace v2023 ("openb", alibaba/clusterdata cluster-trace-gpu-v2023).

- Nodes (`openb_node_list_gpu_node.csv`): one declared node per row, its `gpu` cards of `model`, `cpu_milli`/1000
  CPUs, `memory_mib` host memory. The trace says nothing of topology: cards are taken as PCIe across the system.
- Pods (`openb_pod_list_*.csv`): one single-node job per pod with GPUs. CPU-only pods (`num_gpu` 0) are left out
  (not a GPU scheduler's work). A fractional GPU (`gpu_milli` < 1000) is rounded up to a whole card.
  Duration = `deletion_time` - `scheduled_time`, or - `creation_time` for pods never scheduled (at least 1 s);
  the submit time is `creation_time`; the maximum run time is the duration (exact user estimates).
  `gpu_spec` (`V100M16|V100M32`) gives the accepted models. `qos` gives the class: Guaranteed -> high,
  LS and Burstable -> normal, BE -> low. The trace has no projects: each pod goes to one of `projects`
  projects by the CRC-32 of its name, deterministically.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atelier.errors import InvalidArgument
from atelier.scheduling.catalogue import GIB
from atelier.scheduling.inventory import Node, declared_node
from atelier.scheduling.request import CardFilter, JobRequest
from atelier.scheduling.sim.trace import TraceJob

NODE_FILE = "openb_node_list_gpu_node.csv"
POD_FILE = "openb_pod_list_gpuspec33.csv"
QOS_CLASSES = {"Guaranteed": "high", "LS": "normal", "Burstable": "normal", "BE": "low"}


def read_alibaba_nodes(directory: str | Path) -> list[Node]:
    """The trace's GPU nodes as declared nodes."""
    path = Path(directory) / NODE_FILE
    nodes = []
    for line, row in _rows(path, ("sn", "model", "gpu", "cpu_milli", "memory_mib")):
        with _row_errors(path, line):
            nodes.append(
                declared_node(
                    row["sn"],
                    row["model"],
                    int(row["gpu"]),
                    cpus=int(row["cpu_milli"]) / 1000,
                    memory_gib=int(row["memory_mib"]) / 1024,
                )
            )
    return nodes


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of one of the trace's CSV files with their line numbers; a file that is not the
    trace's is one error naming it."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or ())]
            if missing:
                raise InvalidArgument(f"{path}: not the Alibaba trace's format (no column {', '.join(missing)})")
            return list(enumerate(reader, start=2))
    except UnicodeDecodeError as error:
        raise InvalidArgument(f"{path}: not a CSV text file ({error})") from None
    except OSError as error:
        raise InvalidArgument(f"cannot read {path}: {error.strerror or error}") from None


@contextmanager
def _row_errors(path: Path, line: int) -> Iterator[None]:
    """A row that does not read is one error naming the file and line."""
    try:
        yield
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(f"{path}:{line}: {error}") from None


def project_of(name: str, projects: int) -> str:
    """The synthetic project of a pod: `project-<crc32(name) mod projects>`."""
    return f"project-{zlib.crc32(name.encode()) % projects}"


def read_alibaba_pods(
    directory: str | Path,
    *,
    file: str = POD_FILE,
    projects: int = 6,
    time_scale: float = 1.0,
    max_duration_s: float | None = None,
) -> list[TraceJob]:
    """The trace's GPU pods as jobs, in submit order.

    At its own pace the trace keeps its cluster about 1% busy, and a few dozen long-lived services (pods running
    for months) set its makespan. `time_scale` < 1 compresses arrivals (not durations) to raise the load;
    `max_duration_s` cuts the long-lived pods short, so that the replay measures the batch work.
    """
    path = Path(directory) / file
    rows = _rows(path, ("name", "num_gpu", "creation_time", "deletion_time", "cpu_milli", "memory_mib"))
    created: list[int] = []
    for line, row in rows:
        with _row_errors(path, line):
            created.append(int(row["creation_time"]))
    first = min(created, default=0)
    jobs = []
    for line, row in rows:
        with _row_errors(path, line):
            job = _pod(row, first, projects, time_scale, max_duration_s)
            if job is not None:
                jobs.append(job)
    return sorted(jobs, key=lambda j: (j.request.submit_time, j.request.job_id))


def _pod(
    row: dict[str, str], first: int, projects: int, time_scale: float, max_duration_s: float | None
) -> TraceJob | None:
    """The job of one pod row; None for a pod without GPUs."""
    gpus = int(row["num_gpu"])
    if gpus == 0:
        return None
    milli = int(row.get("gpu_milli") or 1000)
    gpus = max(1, math.ceil(gpus * milli / 1000))
    created = int(row["creation_time"])
    started = int(row["scheduled_time"]) if row.get("scheduled_time") else created
    duration = max(1.0, float(int(row["deletion_time"]) - started))
    if max_duration_s is not None:
        duration = min(duration, max_duration_s)
    spec = row.get("gpu_spec") or ""
    request = JobRequest(
        row["name"],
        1,
        gpus,
        CardFilter(allowed_models=frozenset(m for m in spec.split("|") if m)),
        cpus_per_node=int(row["cpu_milli"]) / 1000,
        memory_bytes_per_node=int(row["memory_mib"]) * GIB // 1024,
        max_runtime_s=duration,
        priority_class=QOS_CLASSES.get(row.get("qos") or "", "normal"),
        project=project_of(row["name"], projects),
        submit_time=(created - first) * time_scale,
    )
    return TraceJob(request, duration)
