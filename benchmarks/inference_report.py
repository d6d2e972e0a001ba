"""What `benchmarks.inference_vs_peers` reports: its cells, the markdown tables, the issue's targets, and the
section of docs/performance.md it writes."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import textwrap
from dataclasses import dataclass, field
from typing import Any

from benchmarks.paths import DOCS

SECTION = "## Inference vs PyTriton and LitServe"


@dataclass
class Cell:
    model: str
    server: str
    protocol: str
    concurrency: int
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    first_error: str = ""
    client_cores: float = 0.0
    server_cores: float = 0.0
    other_cores: float = 0.0
    rss_mib: list[float] = field(default_factory=list)
    seconds: float = 0.0
    limit: float = 0.0
    """For the compute-bound cells: the in-process batched limit measured just before (samples/s)."""
    limit_per_cpu: float = 0.0
    """... and its samples per CPU-second of its own process."""
    own_ms: float = 0.0
    """For the 1-client cells: the model's median time at batch 1, measured just before."""
    rounds: int = 1

    @property
    def per_cpu(self) -> float:
        """Requests per CPU-second of the server's processes: what a shared machine's load distorts least."""
        return self.requests_per_s / self.server_cores if self.server_cores else 0.0


def describe(cell: Cell) -> str:
    return (
        f"{cell.server:<8} {cell.model:<6} {cell.protocol:<8} c={cell.concurrency:<3} {cell.requests_per_s:8.0f} req/s "
        f"p50 {cell.p50_ms:7.2f} ms p99 {cell.p99_ms:7.2f} ms errors {cell.errors} client {cell.client_cores:.2f} "
        f"server {cell.server_cores:.2f} other {cell.other_cores:.2f} cores"
        + (f" ({cell.first_error})" if cell.first_error else "")
    )


@dataclass
class Report:
    flops: dict[str, float] = field(default_factory=dict)
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    soak: Cell | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    models: tuple[str, ...] = ()
    """The models measured, in the order the tables list them."""
    max_batch: int = 0


def find(report: Report, server: str, model: str, protocol: str, concurrency: int) -> Cell | None:
    """The cell's median over the rounds (errors summed), or None when it was not measured."""
    found = [
        x
        for x in report.cells
        if (x.server, x.model, x.protocol, x.concurrency) == (server, model, protocol, concurrency)
    ]
    if len(found) <= 1:
        return found[0] if found else None
    median = Cell(model, server, protocol, concurrency, seconds=found[0].seconds, rounds=len(found))
    for name in ("requests_per_s", "p50_ms", "p99_ms", "client_cores", "server_cores", "other_cores"):
        setattr(median, name, statistics.median(getattr(x, name) for x in found))
    median.errors = sum(x.errors for x in found)
    median.first_error = next((x.first_error for x in found if x.first_error), "")
    ratios = [x.requests_per_s / x.limit for x in found if x.limit]
    median.limit = median.requests_per_s / statistics.median(ratios) if ratios else 0.0
    median.limit_per_cpu = statistics.median(x.limit_per_cpu for x in found)
    median.own_ms = statistics.median(x.own_ms for x in found)
    return median


def render(report: Report, args: argparse.Namespace) -> str:
    c = args.concurrency
    cores = os.cpu_count()
    load = ", ".join(f"{v:.1f}" for v in report.load_before)
    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {cores} cores "
        f"(load average before the run {load}; other work's cores are in each row), Python "
        f"{platform.python_version()}, `--seconds {args.seconds:g}` per cell, {args.rounds} round(s) "
        "(the median of the rounds; servers in turn, their order rotating); Atelier's gRPC port served by "
        f"{args.atelier_grpc_server}. "
        f"Peers: {', '.join(f'{k} ({v})' for k, v in report.versions.items()) or 'none'}.",
        "",
        "| model | server | protocol | clients | req/s | per server CPU-s | p50 ms | p99 ms | errors | client CPU "
        "| server CPU | other |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in report.models:
        limit = report.limits.get(model, {}).get("limit", {})
        if limit:
            best, per_cpu = max(limit.values()), max(report.limits[model]["per_cpu"].values())
            lines.append(
                f"| {model} | the model alone, batched {report.max_batch} | in-process | - | {best:,.0f} samples/s | "
                f"{per_cpu:,.0f} | {report.limits[model]['own_ms']:.3f} (batch 1) | | | | "
                f"{report.limits[model]['busy_cores']:.2f} (machine) | |"
            )
    keys = sorted(
        {(x.server, x.model, x.protocol, x.concurrency) for x in report.cells},
        key=lambda k: (k[1] != "resnet", -k[3], k[2] == "http", ("Atelier", "PyTriton", "LitServe").index(k[0])),
    )
    for key in keys:
        cell = find(report, *key)
        assert cell is not None
        lines.append(
            f"| {cell.model} | {cell.server} | {cell.protocol} | {cell.concurrency} | {cell.requests_per_s:,.0f} | "
            f"{cell.per_cpu:,.0f} | {cell.p50_ms:.2f} | {cell.p99_ms:.2f} | {cell.errors} | {cell.client_cores:.2f} | "
            f"{cell.server_cores:.2f} | {cell.other_cores:.2f} |"
        )
    if report.soak:
        s = report.soak
        lines.append(
            f"| mlp | Atelier, {s.seconds:.0f} s soak | grpc | {s.concurrency} | {s.requests_per_s:,.0f} | "
            f"{s.per_cpu:,.0f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.errors} | {s.client_cores:.2f} | "
            f"{s.server_cores:.2f} | {s.other_cores:.2f} |"
        )
    lines += [
        "",
        "CPU columns are cores (CPU seconds per second) over the measured window.",
        "",
        "Against the issue's targets:",
        "",
    ]
    lines += targets(report, c)
    for name, why in report.unavailable.items():
        lines.append(f"- {name} was not measured: {why}")
    return "\n".join(lines)


def targets(report: Report, c: int) -> list[str]:
    out = []
    for server in ("Atelier", "PyTriton", "LitServe"):
        cell = find(report, server, "resnet", "grpc" if server != "LitServe" else "litserve", c)
        if cell and cell.limit:
            ratio, cpu_ratio = cell.requests_per_s / cell.limit, cell.per_cpu / cell.limit_per_cpu
            verdict = f" (target >= 90%: {'met' if ratio >= 0.9 else 'NOT met'})" if server == "Atelier" else ""
            out.append(
                f"- resnet at {c} clients, {server}: {cell.requests_per_s:,.0f} samples/s = {ratio:.0%} of the "
                f"in-process batched limit measured just before it ({cell.limit:,.0f}/s){verdict}; per CPU-second "
                f"{cell.per_cpu:,.0f} vs the limit's {cell.limit_per_cpu:,.0f} = {cpu_ratio:.0%}"
            )
    for protocol in ("grpc", "http"):
        ours, theirs = find(report, "Atelier", "mlp", protocol, c), find(report, "PyTriton", "mlp", protocol, c)
        if ours and theirs:
            ratio = ours.requests_per_s / theirs.requests_per_s
            out.append(
                f"- mlp at {c} clients over {protocol}: Atelier {ours.requests_per_s:,.0f} req/s vs PyTriton "
                f"{theirs.requests_per_s:,.0f} req/s = {ratio:.2f}x (target >= 1: {'met' if ratio >= 1 else 'NOT met'})"
                "; "
                f"per server CPU-second {ours.per_cpu:,.0f} vs {theirs.per_cpu:,.0f} = "
                f"{ours.per_cpu / theirs.per_cpu if theirs.per_cpu else 0:.2f}x"
            )
    lit = find(report, "LitServe", "mlp", "litserve", c)
    ours = find(report, "Atelier", "mlp", "http", c)
    if lit and ours:
        out.append(
            f"- mlp at {c} clients over HTTP: Atelier {ours.requests_per_s:,.0f} req/s vs LitServe "
            f"{lit.requests_per_s:,.0f} req/s = {ours.requests_per_s / lit.requests_per_s:.2f}x; per server "
            f"CPU-second {ours.per_cpu:,.0f} vs {lit.per_cpu:,.0f}"
        )
    for server in ("Atelier", "PyTriton"):
        for model in report.models:
            cell = find(report, server, model, "grpc", 1)
            if cell and cell.own_ms:
                added = cell.p50_ms - cell.own_ms
                out.append(
                    f"- {model} at 1 client, {server}: p50 {cell.p50_ms:.2f} ms - the model's own "
                    f"{cell.own_ms:.2f} ms (measured just before) = {added:.2f} ms added"
                    + (
                        " (not measurable here: the model's own time moved by more than that under the load)"
                        if added < 0
                        else f" (target < 1 ms: {'met' if added < 1 else 'NOT met'})"
                        if server == "Atelier"
                        else ""
                    )
                )
    if report.soak:
        s = report.soak
        rss = s.rss_mib
        out.append(
            f"- {s.concurrency} clients for {s.seconds:.0f} s: {s.errors} failed requests"
            + (f" ({s.first_error})" if s.first_error else "")
            + (f"; server memory {rss[0]:.0f} MiB at the start, {rss[-1]:.0f} MiB at the end, max {max(rss):.0f} MiB"
               if rss else "")
        )  # fmt: skip
    return out


def wrap(text: str, width: int = 105) -> str:
    """Markdown wrapped as the docs are: paragraphs and bullets at `width`, table rows left alone."""
    out = []
    for line in text.splitlines():
        if line.startswith("|") or len(line) <= width:
            out.append(line)
        elif line.startswith("- "):
            out.append(textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False))
        else:
            out.append(textwrap.fill(line, width, break_on_hyphens=False))
    return "\n".join(out)


def write_docs(body: str) -> None:
    """Replace (or add) this benchmark's section of docs/performance.md, keeping the rest."""
    text = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    intro = (
        "`benchmarks/inference_vs_peers/`: Atelier's inference service, PyTriton and LitServe on the same "
        "TorchScript models, with the same closed-loop load generator (tritonclient gRPC aio and HTTP aio; "
        "aiohttp for LitServe's JSON API), all servers up and measured one at a time, 2 instances of 1 torch "
        "thread each, max batch 64. **Measured under load**: the development machine's 2 cores are shared with "
        "other engineers' work (the `other` column) and with the load generator, so a wall-clock rate is what "
        "a server could get of the machine at that moment; requests per server CPU-second is the steadier figure."
    )
    section = f"{SECTION}\n\n{wrap(intro)}\n\n{wrap(body)}\n\n"
    found = re.search(rf"^{re.escape(SECTION)}\n.*?(?=^# |^## |\Z)", text, re.MULTILINE | re.DOTALL)
    text = text[: found.start()] + section + text[found.end() :] if found else text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text.rstrip("\n") + "\n")
