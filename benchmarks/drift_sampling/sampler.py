"""The sampler's own CPU per request, measured in-process: the steady part of the cost on a shared machine."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import numpy as np

from .config import CLASSES, FEATURES


def sampler_cpu_us(requests: int = 20000) -> dict[str, float]:
    """CPU per request of the sampler's own work in-process (the steady part of the cost): the offer on the
    request path, and the sender's conversion and serialisation of the rows (on the event loop too)."""
    from prometheus_client import CollectorRegistry

    from services.inference.queues import OutputTensor
    from services.inference.repository import Served
    from services.inference.sampling import DriftSampler, SamplingSettings, to_message
    from services.inference.signature import Signature, TensorSpec
    from services.inference.spec import DeploymentSpec
    from services.inference.statistics import ModelStatistics
    from services.inference.tensors import datatype

    fp32 = datatype("FP32")
    signature = Signature((TensorSpec("input", fp32, (-1, FEATURES)),), (TensorSpec("output", fp32, (-1, CLASSES)),))
    served = Served("rows", "bench", 1, "projects/bench/models/rows/versions/v1", "torchscript", signature,
                    DeploymentSpec(), cast(Any, None), ModelStatistics())  # fmt: skip
    sampler = DriftSampler(lambda: "", SamplingSettings(queue_size=requests), CollectorRegistry())
    row = np.zeros((1, FEATURES), np.float32)
    output = OutputTensor(signature.outputs[0], (1, CLASSES), np.zeros((1, CLASSES), np.float32).tobytes())

    async def offer_all() -> float:  # offers are made on the server's event loop
        started = time.process_time()
        for _ in range(requests):
            sampler.offer(served, [row], [output])
        return time.process_time() - started

    offer_seconds = asyncio.run(offer_all())  # the sender task, still asleep, is cancelled as the loop ends
    offered = time.process_time()
    for queued in sampler._rows.values():
        for start in range(0, queued.count, 1000):
            to_message(queued, start, min(start + 1000, queued.count)).SerializeToString()
    converted = time.process_time()
    return {
        "offer_us": offer_seconds / requests * 1e6,
        "send_side_us": (converted - offered) / requests * 1e6,
    }
