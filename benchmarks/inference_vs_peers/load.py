"""The load generator, a process of its own: closed-loop callers over gRPC, HTTP or LitServe's JSON."""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import SHAPES


@dataclass(frozen=True)
class Load:
    protocol: str  # grpc | http | litserve
    url: str
    model: str
    concurrency: int
    seconds: float
    warmup: float


async def closed_loop(load: Load) -> dict[str, Any]:
    """`concurrency` callers, each sending its next request when the last one answered."""
    import numpy as np

    sample = np.random.default_rng(0).standard_normal((1, *SHAPES[load.model])).astype(np.float32)
    send, close = await make_sender(load, sample)
    latencies: list[float] = []
    errors: list[str] = []
    phase = {"measuring": False, "stop": False}

    async def caller() -> None:
        while not phase["stop"]:
            started = time.perf_counter()
            try:
                await send()
            except Exception as error:  # noqa: BLE001 - every failure is counted and the first shown
                if phase["measuring"]:
                    errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            if phase["measuring"]:
                latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(caller()) for _ in range(load.concurrency)]
    await asyncio.sleep(load.warmup)
    phase["measuring"] = True
    print("MEASURING", flush=True)
    cpu0, wall0 = own_cpu(), time.perf_counter()
    await asyncio.sleep(load.seconds)
    phase["measuring"] = False
    wall, cpu = time.perf_counter() - wall0, own_cpu() - cpu0
    print("DONE", flush=True)
    phase["stop"] = True
    await asyncio.wait(tasks, timeout=30)
    await close()
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "wall": wall,
        "client_cpu": cpu,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def make_sender(load: Load, sample: Any) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """One request's coroutine factory and the client's close, for the load's protocol."""
    if load.protocol == "grpc":
        import tritonclient.grpc.aio as grpcaio

        grpc_client = grpcaio.InferenceServerClient(url=load.url)
        grpc_input = grpcaio.InferInput("input", list(sample.shape), "FP32")
        grpc_input.set_data_from_numpy(sample)
        return (lambda: grpc_client.infer(load.model, [grpc_input])), grpc_client.close
    if load.protocol == "http":
        import tritonclient.http.aio as httpaio

        http_client = httpaio.InferenceServerClient(url=load.url, conn_limit=load.concurrency)
        http_input = httpaio.InferInput("input", list(sample.shape), "FP32")
        http_input.set_data_from_numpy(sample, binary_data=True)
        return (lambda: http_client.infer(load.model, [http_input])), http_client.close
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=load.concurrency))
    body = {"input": base64.b64encode(sample[0].tobytes()).decode(), "shape": list(sample.shape[1:])}

    async def post() -> None:
        async with session.post(f"http://{load.url}/predict", json=body) as response:
            response.raise_for_status()
            await response.read()

    return post, session.close


def worker_main(spec: str) -> None:
    result = asyncio.run(closed_loop(Load(**json.loads(spec))))
    print("RESULT " + json.dumps(result), flush=True)
