"""The comparison table of several replays (rich for terminals, markdown for docs)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from atelier.scheduling.sim.metrics import Metrics

_ROWS: tuple[tuple[str, str], ...] = (
    ("jobs", "jobs"),
    ("completed", "completed"),
    ("never ran (rejected + starved)", "never_ran"),
    ("rejected at submission", "rejected"),
    ("preemptions", "preemptions"),
    ("avg JCT", "avg_jct_s"),
    ("p99 JCT", "p99_jct_s"),
    ("p50 queueing delay", "p50_queue_s"),
    ("p99 queueing delay", "p99_queue_s"),
    ("makespan", "makespan_s"),
    ("GPU utilisation", "gpu_utilisation"),
    ("max |share received - entitled|", "_share_gap"),
    ("cycles run", "cycles"),
    ("replay wall time", "wall_s"),
)


def duration(seconds: float) -> str:
    """`"3.2 h"`, `"12 min"`, `"40 s"`."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.1f} s"


def share_gap(m: Metrics) -> float:
    """The largest difference between a project's received and entitled share."""
    projects = set(m.share_received) | set(m.share_entitled)
    return max((abs(m.share_received.get(p, 0.0) - m.share_entitled.get(p, 0.0)) for p in projects), default=0.0)


def _cell(m: Metrics, attribute: str) -> str:
    if attribute == "_share_gap":
        return f"{share_gap(m):.1%}"
    value = getattr(m, attribute)
    if attribute == "gpu_utilisation":
        return f"{value:.1%}"
    if attribute == "wall_s":
        return f"{value:.1f} s"
    if attribute.endswith("_s"):
        return duration(value)
    return f"{value:,}"


def comparison_rows(results: Sequence[Metrics]) -> list[list[str]]:
    """Header row then one row per figure, a column per replay."""
    rows = [["", *(m.name for m in results)]]
    rows.extend([label, *(_cell(m, attribute) for m in results)] for label, attribute in _ROWS)
    return rows


def render_comparison(results: Sequence[Metrics], title: str = "Simulated schedules") -> Table:
    """A rich table comparing replays (print it with `rich.console.Console().print(table)`)."""
    rows = comparison_rows(results)
    table = Table(title=title)
    table.add_column("figure")
    for name in rows[0][1:]:
        table.add_column(name, justify="right")
    for row in rows[1:]:
        table.add_row(*row)
    return table


def comparison_markdown(results: Sequence[Metrics]) -> str:
    """The same comparison as a markdown table."""
    rows = comparison_rows(results)
    lines = ["| figure | " + " | ".join(rows[0][1:]) + " |", "|---|" + "---:|" * (len(rows[0]) - 1)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    return "\n".join(lines)


def shares_markdown(m: Metrics) -> str:
    """Per project: share received vs entitled."""
    lines = ["| project | received | entitled |", "|---|---:|---:|"]
    for project in sorted(set(m.share_received) | set(m.share_entitled)):
        received, entitled = m.share_received.get(project, 0.0), m.share_entitled.get(project, 0.0)
        lines.append(f"| {project} | {received:.1%} | {entitled:.1%} |")
    return "\n".join(lines)
