"""Shared by every worker: the generated versions, the load driver, the training loop."""

from __future__ import annotations

import gc
import itertools
import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import BATCHES, LRS, Result


def version_data(index: int) -> tuple[float, float, str, str]:
    """val_accuracy, loss, lr and batch of the `index`-th version (the same for both tools)."""
    rng = random.Random(index)
    return rng.random(), rng.random(), LRS[rng.randrange(len(LRS))], BATCHES[rng.randrange(len(BATCHES))]


def expected_best(count: int) -> float:
    """The highest val_accuracy among the first `count` versions with lr < 0.01."""
    best = -1.0
    for index in range(count):
        accuracy, _, lr, _ = version_data(index)
        if float(lr) < 0.01:
            best = max(best, accuracy)
    return best


def drive(
    count: int, start: int, threads: int, one: Callable[[int], dict[str, float]], start_at: float | None = None
) -> Result:
    """Call `one(i)` for i in start..start+count-1 from `threads` threads; wall time, errors and the
    mean seconds of each phase `one` reports. With `start_at` (a `time.time()`), the threads start
    then, and the wall time counts from then: several client processes start together."""
    indices = itertools.count(start)
    lock = threading.Lock()
    phases: dict[str, float] = {}
    errors: list[str] = []

    def loop() -> None:
        while (index := next(indices)) < start + count:
            try:
                timings = one(index)
            except Exception as error:  # noqa: BLE001 - counted and reported, the load goes on
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:300])
                continue
            with lock:
                for phase, seconds in timings.items():
                    phases[phase] = phases.get(phase, 0.0) + seconds

    workers = [threading.Thread(target=loop, name=f"client-{n}") for n in range(threads)]
    cpu = time.process_time()
    if start_at is not None:
        time.sleep(max(start_at - time.time(), 0.0))
    began = time.perf_counter() - (max(time.time() - start_at, 0.0) if start_at is not None else 0.0)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - began
    done = count - len(errors)
    return {
        "cpu": {"client": (time.process_time() - cpu) / max(done, 1)},
        "count": done,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "seconds": wall,
        "rate": done / wall if wall > 0 else 0.0,
        "phases": {p: s / max(done, 1) for p, s in phases.items()},
    }


def timed_phases(*steps: tuple[str, Callable[[], Any]]) -> dict[str, float]:
    """Run the steps in order, timing each."""
    timings: dict[str, float] = {}
    for name, step in steps:
        began = time.perf_counter()
        step()
        timings[name] = time.perf_counter() - began
    return timings


def busy(iterations: int) -> int:
    """A fixed amount of pure-Python CPU work (it holds the GIL, like most training-loop glue)."""
    total = 0
    for value in range(iterations):
        total += value * value
    return total


def calibrate(step_ms: float) -> int:
    """Iterations of `busy` that take about `step_ms` here."""
    probe = 100_000
    busy(probe)
    samples = []
    for _ in range(15):
        began = time.perf_counter()
        busy(probe)
        samples.append(time.perf_counter() - began)
    return max(1, int(probe * step_ms / 1000 / statistics.median(samples)))


def metric_names(count: int) -> list[str]:
    return [f"m{k:02d}" for k in range(count)]


def training_loop(steps: int, per_step: int, work: int, log: Callable[[dict[str, float], int], Any]) -> Result:
    """`steps` steps of `busy(work)` then `log(metrics, step)`: wall time, time inside `log`, and the
    garbage collector's pauses (all of them, and those inside `log`)."""
    names = metric_names(per_step)
    state = {"blocked": 0.0, "worst": 0.0, "gc": 0.0, "gc_in_log": 0.0, "gc_start": 0.0, "logging": 0.0}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            state["gc_start"] = time.perf_counter()
            return
        spent = time.perf_counter() - state["gc_start"]
        state["gc"] += spent
        state["gc_in_log"] += spent * state["logging"]

    gc.callbacks.append(on_gc)
    began = time.perf_counter()
    try:
        for step in range(steps):
            busy(work)
            metrics = {name: step * 1e-3 + k for k, name in enumerate(names)}
            state["logging"] = 1.0
            before = time.perf_counter()
            log(metrics, step)
            spent = time.perf_counter() - before
            state["logging"] = 0.0
            state["blocked"] += spent
            state["worst"] = max(state["worst"], spent)
        wall = time.perf_counter() - began
    finally:
        gc.callbacks.remove(on_gc)
    return {
        "steps": steps,
        "points": steps * per_step,
        "loop": wall,
        "blocked": state["blocked"],
        "worst_call": state["worst"],
        "gc": state["gc"],
        "gc_in_log": state["gc_in_log"],
    }


def baseline_step(steps: int, per_step: int, work: int) -> float:
    """Seconds per step of the same loop without logging (a tenth of its steps, 5,000 to 20,000), here."""
    count = max(1, min(steps, max(5_000, min(steps // 10, 20_000))))
    return float(training_loop(count, per_step, work, lambda metrics, step: None)["loop"]) / count


def latencies(calls: int, query: Callable[[], Any]) -> tuple[list[float], Any]:
    """Seconds of each of `calls` calls of `query` (after 5 untimed ones), and its last answer."""
    answer = None
    for _ in range(5):
        answer = query()
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        answer = query()
        times.append(time.perf_counter() - began)
    return times, answer
