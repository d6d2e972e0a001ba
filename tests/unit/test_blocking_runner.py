"""BlockingRunner: blocking calls on worker threads, with the caller's context (and so its trace)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import threading

import pytest

from atelier.runtime.server import BlockingRunner

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def _seen(prefix: str, *, suffix: str) -> tuple[str, str]:
    return f"{prefix}{request_id.get()}{suffix}", threading.current_thread().name


def _fail() -> None:
    raise ValueError("broken on the worker")


def test_calls_run_on_workers_with_the_callers_context() -> None:
    runner = BlockingRunner(2)

    async def call(name: str) -> tuple[str, str]:
        request_id.set(name)
        return await runner(_seen, "<", suffix=">")

    async def main() -> list[tuple[str, str]]:
        return list(await asyncio.gather(call("a"), call("b")))

    try:
        results = asyncio.run(main())
    finally:
        runner.shutdown()
    assert [value for value, _ in results] == ["<a>", "<b>"]
    assert all(thread.startswith("atelier-blocking") for _, thread in results)
    assert request_id.get() == "none"


def test_errors_reach_the_caller() -> None:
    runner = BlockingRunner(1)
    try:
        with pytest.raises(ValueError, match="broken on the worker"):
            asyncio.run(runner(_fail))
    finally:
        runner.shutdown()


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values are per thread on Linux only")
def test_a_nice_runner_lowers_its_threads_priority_and_not_the_callers() -> None:
    caller = _nice()
    runner = BlockingRunner(1, nice=19, name="background")
    try:
        worker = asyncio.run(runner(_nice))
        name = asyncio.run(runner(lambda: threading.current_thread().name))
    finally:
        runner.shutdown()
    assert worker == 19
    assert name.startswith("background")
    assert _nice() == caller
