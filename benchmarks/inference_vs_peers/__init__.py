"""Atelier's inference service side by side with PyTriton and LitServe: same machine, same models,
same load generator.

Models (TorchScript, random weights, seed 0, saved once and loaded by every server):
- `resnet`: a small ResNet (4 stages of one basic block, 32-256 channels), input FP32 [B, 3, 64, 64],
  ~130 MFLOP per sample (counted in models.py): compute-bound.
- `mlp`: 64 -> 64 -> 10, input FP32 [B, 64]: overhead-bound.

Servers, one at a time, each with 2 model instances of 1 torch thread, max batch 64, no queue delay:
- Atelier: `atelier up` on a fresh home under benchmarks/.work/inference-run, both models registered
  with `log_model` and deployed with `atelier serve deploy --instances 2 --max-batch-size 64`.
- PyTriton (`nvidia-pytriton`, the real Triton server, on CPU): both models bound with 2 instances and
  Triton's dynamic batcher; installed by this script into benchmarks/.work/pytriton-venv.
- LitServe: one server per model, 2 workers, `max_batch_size=64`; tensors as base64 in JSON (its
  API is not KServe v2); installed into benchmarks/.work/litserve-venv.
The peers' venvs reach the project's CPU torch through a `.pth` file, so every server runs the
same torch build.

The load generator is one closed loop per concurrency slot in a fresh process of the project's
Python: tritonclient's gRPC aio client, tritonclient's HTTP aio client, or aiohttp POSTs for LitServe.
It warms up, then measures for `--seconds`: requests/s, p50/p99 latency, errors, its own CPU and the
CPU of the server's process tree (from /proc), and the CPU other work on the machine took meanwhile.
The in-process limit is the model alone in one process, batched (64 samples, 2 threads of 1 torch
thread, or 1 thread of all torch threads: the better); the model's own time is its median at batch 1.

    .venv/bin/python -m benchmarks.inference_vs_peers --seconds 10 [--write-docs] [--peers atelier,pytriton]
"""
