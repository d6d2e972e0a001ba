"""The two TorchScript models: building them, counting their FLOPs, and the model alone in one process."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from .config import INSTANCES, MAX_BATCH, SHAPES
from .load import own_cpu


def build_models(directory: Path) -> dict[str, float]:
    """Save both models as TorchScript under `directory`; return MFLOP per sample of each."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, inputs: int, outputs: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(outputs)
            self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(outputs)
            self.shortcut: nn.Module = nn.Identity()
            if stride != 1 or inputs != outputs:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    torch.manual_seed(0)
    resnet = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2), Block(128, 256, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10),
    ).eval()  # fmt: skip
    mlp = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    directory.mkdir(parents=True, exist_ok=True)
    flops = {}
    for name, module in (("resnet", resnet), ("mlp", mlp)):
        example = torch.randn(2, *SHAPES[name])
        flops[name] = count_flops(module, example[:1]) / 1e6
        with torch.no_grad():
            torch.jit.trace(module, example).save(str(directory / f"{name}.pt"))  # type: ignore[no-untyped-call]
    return flops


def count_flops(module: Any, x: Any) -> float:
    """Multiply-adds x 2 of every convolution and linear layer for one forward pass."""
    import torch
    from torch import nn

    total = [0.0]

    def hook(layer: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if isinstance(layer, nn.Conv2d):
            per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            total[0] += 2.0 * per_output * output.numel()
        elif isinstance(layer, nn.Linear):
            total[0] += 2.0 * layer.in_features * output.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return total[0]


def limit_main(spec: str) -> None:
    """Samples/s of the model batched in one process, and its median time at batch 1 (1 torch thread)."""
    import threading

    import torch

    args = json.loads(spec)
    model = torch.jit.load(args["path"])  # type: ignore[no-untyped-call]
    batch = torch.randn(MAX_BATCH, *SHAPES[args["model"]])
    one = batch[:1].clone()
    seconds = float(args["seconds"])
    results: dict[str, float] = {}
    per_cpu: dict[str, float] = {}
    with torch.no_grad():
        for threads, torch_threads in ((INSTANCES, 1), (1, os.cpu_count() or 1)) if seconds > 0 else ():
            torch.set_num_threads(torch_threads)
            for _ in range(3):
                model(batch)
            counts = [0] * threads
            deadline = time.perf_counter() + seconds / 2

            def run(index: int, counts: list[int] = counts, deadline: float = deadline) -> None:
                while time.perf_counter() < deadline:
                    model(batch)
                    counts[index] += MAX_BATCH

            started, cpu = time.perf_counter(), own_cpu()
            pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            results[f"{threads}x{torch_threads}"] = sum(counts) / (time.perf_counter() - started)
            per_cpu[f"{threads}x{torch_threads}"] = sum(counts) / max(own_cpu() - cpu, 1e-9)
        torch.set_num_threads(1)
        times = []
        for _ in range(int(args.get("single", 300))):
            started = time.perf_counter()
            model(one)
            times.append(time.perf_counter() - started)
    own_ms = statistics.median(times) * 1000
    print("RESULT " + json.dumps({"limit": results, "per_cpu": per_cpu, "own_ms": own_ms}), flush=True)
