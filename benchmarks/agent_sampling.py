"""What an agent's GPU sampling costs: CPU per sampling round and per Prometheus scrape, as a share of
one core at the 1 s interval, with 8 cards. Target (issue 8): under 1% of one core.

Runs the declared-inventory (simulated) backend always, and NVML where an NVIDIA driver answers, side
by side in one run. CPU time (`time.process_time`) is what to compare on a loaded machine.

    .venv/bin/python benchmarks/agent_sampling.py [--rounds 300] [--cards 8]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from prometheus_client import CollectorRegistry, generate_latest

from services.scheduler.agent.discovery import DeclaredInventory
from services.scheduler.agent.telemetry.exporter import DcgmCollector, Holder
from services.scheduler.agent.telemetry.sampler import Sampler
from services.scheduler.agent.telemetry.samples import TelemetrySource
from services.scheduler.agent.telemetry.simulated import SimulatedTelemetry
from services.scheduler.catalogue import card_spec


def measure(name: str, source: TelemetrySource, rounds: int, interval_s: float) -> dict[str, float | str]:
    collector = DcgmCollector("bench", source.driver_version, source.simulated, 5.0, 600.0)
    holder = Holder("projects/bench/jobs/train", "bench", "bench")
    sampler = Sampler(source, collector, lambda: {0: holder, 1: holder})
    registry = CollectorRegistry()
    registry.register(collector)
    sampler.sample_once()
    started = time.process_time()
    for _ in range(rounds):
        sampler.sample_once()
    sample_cpu = (time.process_time() - started) / rounds
    started = time.process_time()
    for _ in range(rounds // 10 or 1):
        generate_latest(registry)
    scrape_cpu = (time.process_time() - started) / (rounds // 10 or 1)
    # Prometheus scrapes every 15 s by default; the stack's Prometheus every 5 s.
    per_second = sample_cpu / interval_s + scrape_cpu / 5.0
    return {
        "backend": name,
        "sample_ms": sample_cpu * 1000,
        "scrape_ms": scrape_cpu * 1000,
        "core_percent": per_second * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--cards", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cards = DeclaredInventory(json.dumps({"cards": [{"model": "H100", "count": args.cards}]}), card_spec)
    results = [measure("declared (simulated)", SimulatedTelemetry(cards.inventory().cards), args.rounds, 1.0)]
    try:
        from services.scheduler.agent.telemetry.nvml import NvmlTelemetry

        results.append(measure("nvml", NvmlTelemetry(), args.rounds, 1.0))
    except Exception as error:  # noqa: BLE001 - no driver here: say so and measure what can be
        results.append({"backend": f"nvml: not available ({type(error).__name__})"})
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"results": results, "load_average_1m": load}, indent=2))
        return
    print(f"{args.cards} cards, {args.rounds} rounds, load average {load:.2f}")
    print(f"{'backend':<34} {'CPU/sample':>11} {'CPU/scrape':>11} {'share of a core':>16}")
    for row in results:
        if "sample_ms" not in row:
            print(f"{row['backend']:<34}")
            continue
        print(
            f"{row['backend']:<34} {row['sample_ms']:>9.3f}ms {row['scrape_ms']:>9.3f}ms "
            f"{row['core_percent']:>14.3f}%   (target < 1%: {'met' if float(row['core_percent']) < 1 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
