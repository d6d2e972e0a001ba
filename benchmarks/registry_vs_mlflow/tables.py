"""The markdown tables: the results against MLflow, call latencies, CPU per version, the search breakdown."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from .config import BATCH_SIZE, Config, Result
from .workload import expected_best


def ms(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1000:.3f} ms"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def times_text(times: Sequence[float]) -> str:
    return f"{ms(statistics.median(times))} / {ms(percentile(times, 0.99))}"


def rate_text(result: Result) -> str:
    errors = f", **{result['errors']} errors**" if result["errors"] else ""
    return f"{result['rate']:,.0f}/s ({result['count']:,} in {result['seconds']:.1f} s{errors})"


def times_better(ours: float, theirs: float) -> str:
    """How many times better Atelier is, `ours` and `theirs` in the same bigger-is-better unit."""
    if theirs <= 0:
        return "∞"
    return f"{ours / theirs:.1f}x" if ours >= theirs else f"{ours / theirs:.2f}x"


Row = tuple[str, str, str, str, str, bool | None]


def registration_rows(f: dict[str, Any], config: Config) -> list[Row]:
    at, full, server, direct = f["at_1a"], f["at_1b"], f["ml_1b"], f["ml_1c"]
    target = at["rate"] >= 1000
    rows: list[Row] = [
        (
            f"1a. Register versions, {config.threads} threads, SQLite, over the network. Atelier: 1 CreateModelVersion "
            "(metrics + params inline); MLflow server: create_run + log_batch + create_model_version",
            rate_text(at),
            rate_text(server),
            times_better(at["rate"], server["rate"]),
            "Atelier >= 1,000/s",
            target,
        ),
        (
            "1b. Same, like for like: Atelier CreateRun + LogRunData + CreateModelVersion(lineage.run)",
            rate_text(full),
            rate_text(server),
            times_better(full["rate"], server["rate"]),
            "",
            None,
        ),
        (
            "1c. MLflow writing SQLite directly (MlflowClient on sqlite:///, no server; reference) vs Atelier 1a",
            rate_text(at),
            rate_text(direct),
            times_better(at["rate"], direct["rate"]),
            "",
            None,
        ),
    ]
    if "at_1f" in f:
        rows.append(
            (
                f"1f. Atelier BatchCreateModelVersions, {BATCH_SIZE} versions a call, {config.threads} threads (MLflow "
                "has no batch registration API: its one-by-one server path of 1a)",
                rate_text(f["at_1f"]),
                rate_text(server),
                times_better(f["at_1f"]["rate"], server["rate"]),
                "Atelier >= 1,000/s",
                f["at_1f"]["rate"] >= 1000,
            )
        )
    if "at_pg" in f:
        rows.append(("1d. Atelier 1a on PostgreSQL (registry database only)", rate_text(f["at_pg"]), "—", "", "", None))
    if "at_fill" in f:
        start, end = f["at_fill_from"], f["at_search_count"]
        rows.append(
            (
                f"1e. Atelier 1a while the model grows from {start:,} to {end:,} versions",
                rate_text(f["at_fill"]),
                "—",
                "",
                "",
                None,
            )
        )
    return rows


def search_rows(f: dict[str, Any], config: Config) -> list[Row]:
    at, server, direct = f["at_search"], f["ml_search"], f["ml_search_direct"]
    at_median = statistics.median(at["times"])
    label = (
        f"2. Best version by val_accuracy with lr < 0.01, median / p99 of {config.search_calls} calls. Atelier: "
        f"{f['at_search_count']:,} versions in one model, 1 ListModelVersions over gRPC; MLflow: "
        f"{f['ml_search_count']:,} versions in one model, search_runs + search_model_versions via the server"
    )
    return [
        (
            label,
            times_text(at["times"]),
            times_text(server["times"]),
            times_better(statistics.median(server["times"]), at_median),
            "Atelier median < 10 ms",
            at_median < 0.010,
        ),
        (
            "2'. MLflow's two steps on SQLite directly (no server; reference)",
            times_text(at["times"]),
            times_text(direct["times"]),
            times_better(statistics.median(direct["times"]), at_median),
            "",
            None,
        ),
        (
            "2''. Answer equals the best val_accuracy in the generated data",
            answer_text(at["answer"], expected_best(f["at_search_count"])),
            answer_text(server["answer"], expected_best(f["ml_search_count"])),
            "",
            "",
            None,
        ),
    ]


def answer_text(answer: float | None, expected: float) -> str:
    return "yes" if answer is not None and abs(answer - expected) < 1e-12 else f"**no** ({answer} vs {expected})"


def blocked_pct(result: Result) -> float:
    return 100 * float(result["blocked"]) / float(result["loop"])


def logging_rows(f: dict[str, Any], config: Config) -> list[Row]:
    at = f["at_log"]
    rows: list[Row] = [
        (
            f"3a. Time inside the logging calls, % of the loop's wall time ({config.metrics_per_step} metrics/step, "
            f"~{config.step_ms:g} ms CPU/step). MLflow synchronous `mlflow.log_metrics`",
            log_text(at),
            log_text(f["ml_log_sync"]),
            times_better(blocked_pct(f["ml_log_sync"]), blocked_pct(at)),
            "Atelier < 1 %",
            blocked_pct(at) < 1.0,
        ),
        (
            "3b. Same, MLflow `mlflow.log_metrics(..., synchronous=False)`",
            log_text(at),
            log_text(f["ml_log_async"]),
            times_better(blocked_pct(f["ml_log_async"]), blocked_pct(at)),
            "",
            None,
        ),
    ]
    for label, key in (("synchronous", "ml_log_sync"), ("synchronous=False", "ml_log_async")):
        ml = f[key]
        flush = "flush_async_logging + " if "async" in key else ""
        rows += [
            (
                "3c. Loop wall time vs the same loop without logging (run just before in the same process); "
                f"MLflow {label}",
                slowdown(at),
                slowdown(ml),
                "",
                "",
                None,
            ),
            (
                f"3d. Flush at the end (Atelier `run.end()`; MLflow {flush}end_run); MLflow {label}",
                ms(at["flush"]),
                ms(ml["flush"]),
                times_better(ml["flush"], at["flush"]),
                "",
                None,
            ),
            (
                f"3e. Points per second from the first log call to the end of the flush; MLflow {label}",
                f"{ingest(at):,.0f}/s",
                f"{ingest(ml):,.0f}/s",
                times_better(ingest(at), ingest(ml)),
                "",
                None,
            ),
            (
                f"3f. Points that arrived (Atelier: ListMetricHistory, report.lost; MLflow: rows in its database); "
                f"MLflow {label}",
                f"{at['arrived']:,} of {at['points']:,}, lost {at['lost']}",
                f"{ml['arrived']:,} of {ml['points']:,}",
                "",
                "all",
                at["arrived"] == at["points"] and at["lost"] == 0,
            ),
        ]
    return rows


def log_text(result: Result) -> str:
    return (
        f"{blocked_pct(result):.2f} % ({result['blocked']:.2f} s of {result['loop']:.1f} s, "
        f"{result['points']:,} points; slowest call {ms(result['worst_call'])}; GC pauses inside it "
        f"{ms(result['gc_in_log'])} of {ms(result['gc'])})"
    )


def ingest(result: Result) -> float:
    return float(result["points"]) / (float(result["loop"]) + float(result["flush"]))


def slowdown(result: Result) -> str:
    expected = result["baseline_step"] * result["steps"]
    return f"{result['loop']:.1f} s vs {expected:.1f} s (+{100 * (result['loop'] / expected - 1):.1f} %)"


def results_table(f: dict[str, Any], config: Config) -> str:
    rows = registration_rows(f, config) + search_rows(f, config) + logging_rows(f, config)
    lines = [
        "| Measurement | Atelier | MLflow | Atelier advantage | Target | Met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for label, at, ml, ratio, target, met in rows:
        shown = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {label} | {at} | {ml} | {ratio} | {target} | {shown} |")
    return "\n".join(lines)


def phases_table(f: dict[str, Any]) -> str:
    """Mean latency of each call of a registration, under the same thread count."""
    lines = ["| Registration path | Call | Mean latency |", "|---|---|---:|"]
    for label, key in REGISTRATIONS:
        for phase, seconds in f.get(key, {}).get("phases", {}).items():
            lines.append(f"| {label} | {phase} | {ms(seconds)} |")
    return "\n".join(lines)


REGISTRATIONS = (
    ("Atelier 1a", "at_1a"),
    ("Atelier 1b", "at_1b"),
    (f"Atelier 1f (batches of {BATCH_SIZE})", "at_1f"),
    ("Atelier 1d (PostgreSQL)", "at_pg"),
    ("Atelier 1e (filling)", "at_fill"),
    ("MLflow server", "ml_1b"),
    ("MLflow direct SQLite", "ml_1c"),
)


def cpu_table(f: dict[str, Any], cores: int) -> str:
    """CPU per registered version by process, and how many of the machine's cores that kept busy."""
    lines = [
        f"| Registration path | versions/s | CPU per version, by process | cores busy (of {cores}) |",
        "|---|---:|---|---:|",
    ]
    for label, key in REGISTRATIONS:
        if key not in f:
            continue
        cpu = f[key]["cpu"]
        parts = ", ".join(f"{name} {ms(seconds)}" for name, seconds in cpu.items())
        busy_cores = sum(cpu.values()) * f[key]["rate"]
        lines.append(
            f"| {label} | {f[key]['rate']:,.0f} | {parts} (total {ms(sum(cpu.values()))}) | {busy_cores:.2f} |"
        )
    return "\n".join(lines)


def breakdown_text(f: dict[str, Any]) -> str:
    b = f["at_breakdown"]
    grpc_median = statistics.median(f["at_search"]["times"])
    lines = [
        "| Atelier best-version query | median | p99 |",
        "|---|---:|---:|",
        f"| over gRPC (client, network, server, SQL) | {times_text(f['at_search']['times']).replace(' / ', ' | ')} |",
        f"| the registry's `Models.list_versions` in-process (ORM + SQL, no gRPC) | "
        f"{times_text(b['domain']).replace(' / ', ' | ')} |",
        f"| its main SQL statement on a plain sqlite3 connection | {times_text(b['raw']).replace(' / ', ' | ')} |",
        "",
        f"gRPC + client + server framework: {ms(grpc_median - statistics.median(b['domain']))} of the median; "
        f"the query makes {b['statements']} SQL statements. SQLite's plan for the main one "
        "(`EXPLAIN QUERY PLAN`):",
        "",
        "```",
        *b["plan"],
        "```",
    ]
    return "\n".join(lines)
