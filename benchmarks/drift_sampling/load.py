"""The open-loop client: one side's requests in a phase, and the rounds of phases, the order alternating."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field

import grpc

from .config import FEATURES
from .services import Service, machine_ticks


@dataclass
class Phase:
    """One side's requests during one phase, and what the machine spent meanwhile."""

    label: str
    round: int
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    late: int = 0
    """Requests the client sent more than 1 ms behind their schedule (the client could not keep up)."""
    seconds: float = 0.0
    server_cpu: float = 0.0
    server_threads: dict[str, float] = field(default_factory=dict)
    """The server's CPU per kind of thread (see `Service.thread_cpu_seconds`)."""
    client_cpu: float = 0.0
    machine_busy: float = 0.0
    """Share of all cores busy (from /proc/stat), whatever the process."""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p90_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.9)] * 1000 if ordered else float("nan")


async def phase(current: Phase, service: Service, rate: float, seconds: float, payload: bytes) -> None:
    """Open loop: request i leaves at start + i / rate whatever the earlier ones are doing."""
    from atelier.inference.protocol import grpc_service_pb2 as ipb
    from atelier.inference.protocol import grpc_service_pb2_grpc as igrpc

    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = igrpc.GRPCInferenceServiceStub(channel)
        request = ipb.ModelInferRequest(model_name="rows")
        tensor = request.inputs.add(name="input", datatype="FP32")
        tensor.shape.extend([1, FEATURES])
        request.raw_input_contents.append(payload)

        async def one() -> None:
            sent = time.perf_counter()
            try:
                await stub.ModelInfer(request, timeout=10)
                current.latencies.append(time.perf_counter() - sent)
            except grpc.aio.AioRpcError:
                current.failed += 1

        server_cpu, client_cpu, ticks = service.cpu_seconds(), time.process_time(), machine_ticks()
        threads = service.thread_cpu_seconds()
        tasks = []
        started = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001:
                current.late += 1
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        busy, all_ticks = (now - before for now, before in zip(machine_ticks(), ticks, strict=True))
        current.seconds = time.perf_counter() - started
        current.sent = total
        current.server_cpu = service.cpu_seconds() - server_cpu
        current.server_threads = {
            name: cpu - threads.get(name, 0.0) for name, cpu in service.thread_cpu_seconds().items()
        }
        current.client_cpu = time.process_time() - client_cpu
        current.machine_busy = busy / max(all_ticks, 1)


def run_phases(on: Service, off: Service, args: argparse.Namespace, payload: bytes) -> list[Phase]:
    """Rounds of one phase per side, back to back, the order alternating (on-off, off-on, ...)."""
    phases = []
    for round_ in range(args.rounds):
        order = [("on", on), ("off", off)] if round_ % 2 == 0 else [("off", off), ("on", on)]
        for label, server in order:
            current = Phase(label, round_ + 1)
            asyncio.run(phase(current, server, args.rate, args.phase_seconds, payload))
            phases.append(current)
    return phases
