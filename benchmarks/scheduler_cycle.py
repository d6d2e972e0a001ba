"""One scheduling cycle at the issue's scale: 1,000 nodes x 8 GPUs, 10,000 pending jobs, target < 100 ms.

Builds a mixed cluster (eight card models, NVLink islands on the big cards), loads about 70% of its cards with
running jobs, queues 10,000 mixed pending jobs (1-8 GPUs, some 2- and 4-node gangs, memory and precision
constraints, three classes, twenty projects with quotas for some) and times `schedule()` as the scheduler
service calls it (free capacity rebuilt from the running jobs, reasons for every pending job). Prints a table of
wall and CPU time per cycle (CPU time, `time.process_time`, is what to compare on a loaded machine) and the
load average of the machine while it ran.

    .venv/bin/python benchmarks/scheduler_cycle.py [--cycles 30] [--nodes 1000] [--pending 10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
from collections.abc import Callable

from atelier.scheduling import (
    FairShareUsage,
    JobQueue,
    JobRequest,
    Node,
    NodeAssignment,
    Placement,
    PolicyConfig,
    RunningJob,
    declared_node,
    schedule,
)

MODELS = [("T4", 4, 0), ("V100M16", 8, 2), ("V100M32", 8, 4), ("A10", 4, 0), ("L40S", 8, 0), ("A100-40", 8, 4),
          ("A100-80", 8, 4), ("H100", 8, 8)]  # fmt: skip
TARGET_MS = 100.0


def build_cluster(count: int, rng: random.Random) -> list[Node]:
    """`count` 8-GPU nodes (4-GPU for the small cards) of mixed models."""
    nodes = []
    for i in range(count):
        model, _, island = MODELS[i % len(MODELS)]
        nodes.append(declared_node(f"node-{i:04d}", model, 8, nvlink_island=island, cpus=96, memory_gib=1024))
    rng.shuffle(nodes)
    return nodes


def load(nodes: list[Node], share: float, rng: random.Random, now: float) -> list[RunningJob]:
    """Running jobs holding about `share` of the cards (1, 2, 4 or 8 cards each)."""
    running = []
    for node in nodes:
        free = [card.index for card in node.cards]
        target = int(len(free) * share + rng.random())
        while target > 0:
            size = min(target, rng.choice((1, 1, 2, 4, 8)))
            cards, free = tuple(free[:size]), free[size:]
            target -= size
            request = JobRequest(
                f"run-{len(running)}",
                gpus_per_node=size,
                cpus_per_node=4 * size,
                max_runtime_s=rng.uniform(600, 48 * 3600),
                project=f"p{rng.randrange(20)}",
                submit_time=now - 7200,
            )
            running.append(
                RunningJob(request, Placement((NodeAssignment(node.name, cards),)), now - rng.uniform(0, 3600))
            )
    return running


def pending_jobs(count: int, rng: random.Random, now: float) -> list[JobRequest]:
    """Mixed pending jobs."""
    jobs = []
    for i in range(count):
        nodes = rng.choices((1, 2, 4), weights=(90, 7, 3))[0]
        per_node = 8 if nodes > 1 else rng.choices((1, 2, 4, 8), weights=(50, 20, 15, 15))[0]
        memory, precision = rng.choice(((0, None), (16, "fp16"), (24, None), (40, "bf16"), (80, "bf16"), (80, "fp8")))
        jobs.append(
            JobRequest.of(
                f"job-{i}",
                nodes=nodes,
                gpus_per_node=per_node,
                min_gpu_memory_gib=memory,
                precision=precision,
                cpus_per_node=4 * per_node,
                max_runtime_s=rng.choice((1800, 3600, 4 * 3600, 24 * 3600)),
                priority_class=rng.choices(("low", "normal", "high"), weights=(30, 65, 5))[0],
                project=f"p{rng.randrange(20)}",
                submit_time=now - rng.uniform(0, 86400),
            )
        )
    return jobs


def timed(run: Callable[[], object], cycles: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each cycle."""
    run()  # warm-up: memoised card choices, interned kinds
    wall, cpu = [], []
    for _ in range(cycles):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, cpu


def measure(scenario: str, share: float, args: argparse.Namespace) -> None:
    """Print the rows of one load level."""
    rng = random.Random(4)
    now = 1_000_000.0
    nodes = build_cluster(args.nodes, rng)
    running = load(nodes, share, rng, now)
    jobs = pending_jobs(args.pending, rng, now)
    config = PolicyConfig(shares={f"p{i}": 1 + i % 3 for i in range(20)}, gpu_quotas={"p0": 64, "p1": 128, "p2": 32})
    usage = FairShareUsage(now, {f"p{i}": 3600.0 * 8 * i for i in range(20)})
    queue = JobQueue(jobs)
    decided = schedule(nodes, queue, running, now, config, usage)
    rows: list[tuple[str, Callable[[], object]]] = [
        ("queue rebuilt, reasons for all", lambda: schedule(nodes, jobs, running, now, config, usage)),
        ("service: queue kept, reasons for all", lambda: schedule(nodes, queue, running, now, config, usage)),
        ("simulator: no reasons", lambda: schedule(nodes, queue, running, now, config, usage, explain=False)),
    ]
    for label, run in rows:
        wall, cpu = timed(run, args.cycles)
        wall.sort()
        p99 = wall[min(len(wall) - 1, int(round(0.99 * (len(wall) - 1))))]
        print(
            f"| {scenario} | {label} | {len(decided.starts)} | {len(decided.preemptions)} | "
            f"{statistics.median(wall):.1f} | {p99:.1f} | {statistics.median(cpu):.1f} | {TARGET_MS:.0f} | "
            f"{'yes' if statistics.median(cpu) < TARGET_MS else 'no'} | {os.getloadavg()[0]:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=10_000)
    args = parser.parse_args()
    print(
        "| scenario | cycle | starts | preemptions | median ms | p99 ms | median CPU ms | target | met (CPU) | load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    measure("steady: 97% of cards held", 0.97, args)
    measure("burst: 70% of cards held", 0.7, args)
    cards = sum(len(n.cards) for n in build_cluster(args.nodes, random.Random(4)))
    print(f"\n{args.nodes} nodes, {cards} GPUs (8 models), {args.pending} pending jobs; CPython, one thread")


if __name__ == "__main__":
    main()
