"""The figures of a run: per round and per side, the ratios, saturation warnings; printed as tables."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from .load import Phase


def side_summary(phases: list[Phase]) -> dict[str, Any]:
    latencies = sorted(latency for p in phases for latency in p.latencies)
    sent = sum(p.sent for p in phases)
    seconds = sum(p.seconds for p in phases)
    return {
        "requests": sent,
        "failed": sum(p.failed for p in phases),
        "late_share": sum(p.late for p in phases) / max(sent, 1),
        "median_ms": statistics.median(latencies) * 1000,
        "p90_ms": latencies[int(len(latencies) * 0.9)] * 1000,
        "inference_cpu_us_per_request": sum(p.server_cpu for p in phases) / max(sent, 1) * 1e6,
        "client_cpu_us_per_request": sum(p.client_cpu for p in phases) / max(sent, 1) * 1e6,
        "inference_thread_cpu_us_per_request": {
            name: sum(p.server_threads.get(name, 0.0) for p in phases) / max(sent, 1) * 1e6
            for name in sorted({name for p in phases for name in p.server_threads})
        },
        "client_cores": sum(p.client_cpu for p in phases) / max(seconds, 1e-9),
        "machine_busy": sum(p.machine_busy * p.seconds for p in phases) / max(seconds, 1e-9),
    }


def build_report(phases: list[Phase], monitor_cpu: float, loads: list[tuple[float, float, float]]) -> dict[str, Any]:
    rounds = []
    for number in sorted({p.round for p in phases}):
        by_label = {p.label: p for p in phases if p.round == number}
        on, off = by_label["on"].median_ms, by_label["off"].median_ms
        rounds.append({"round": number, "on_median_ms": on, "off_median_ms": off, "ratio": on / off})
    sides = {label: side_summary([p for p in phases if p.label == label]) for label in ("on", "off")}
    warnings = []
    for label, side in sides.items():
        if side["late_share"] > 0.01:
            warnings.append(f"the client sent {side['late_share']:.1%} of the {label} requests over 1 ms late")
        if side["client_cores"] > 0.8:
            warnings.append(f"the client used {side['client_cores']:.2f} of a core during the {label} phases")
        if side["machine_busy"] > 0.85:
            warnings.append(f"the machine's cores were {side['machine_busy']:.0%} busy during the {label} phases")
    return {
        "rounds": rounds,
        "sides": sides,
        "median_ratio_on_off": statistics.median(r["ratio"] for r in rounds),
        "pooled_median_ratio_on_off": sides["on"]["median_ms"] / sides["off"]["median_ms"],
        "monitor_cpu_us_per_sampled_request": monitor_cpu / max(sides["on"]["requests"], 1) * 1e6,
        "load_average_before": loads[0],
        "load_average_after": loads[1],
        "saturation": warnings,
    }


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"open loop, {args.rate:.0f} single-row requests/s, {args.rounds} rounds x {args.phase_seconds}s per side")
    if args.sample_rate != 1:
        print(f"the 'on' server samples a share of {args.sample_rate} of its requests (0: an A/A run)")
    print("| round | on median ms | off median ms | on/off |")
    print("|---|---|---|---|")
    for r in report["rounds"]:
        print(f"| {r['round']} | {r['on_median_ms']:.3f} | {r['off_median_ms']:.3f} | {r['ratio']:.3f} |")
    print("| sampling | requests | failed | median ms | p90 ms | inference CPU us/req | client CPU us/req | busy |")
    print("|---|---|---|---|---|---|---|---|")
    for label, s in report["sides"].items():
        print(
            f"| {label} | {s['requests']} | {s['failed']} | {s['median_ms']:.3f} | {s['p90_ms']:.3f} | "
            f"{s['inference_cpu_us_per_request']:.0f} | {s['client_cpu_us_per_request']:.0f} | "
            f"{s['machine_busy']:.0%} |"
        )
    for label, s in report["sides"].items():
        threads = ", ".join(f"{n} {us:.0f}" for n, us in s["inference_thread_cpu_us_per_request"].items() if us >= 0.5)
        print(f"inference CPU us/req by thread, {label}: {threads}")
    print(f"median of the rounds' on/off ratios: {report['median_ratio_on_off']:.3f}")
    print(f"on/off of the pooled medians: {report['pooled_median_ratio_on_off']:.3f}")
    print(f"monitor CPU per sampled request: {report['monitor_cpu_us_per_sampled_request']:.0f} us")
    micro = report["sampler_cpu_us_per_request"]
    print(
        f"sampler CPU per request in-process: {micro['offer_us']:.1f} us on the request path, "
        f"{micro['send_side_us']:.1f} us in the sender task"
    )
    print(f"monitor window: {report['drift_window_rows']} rows")
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']}")
    for warning in report["saturation"] or ["none: the client kept its schedule and the cores had idle time"]:
        print(f"saturation: {warning}")
