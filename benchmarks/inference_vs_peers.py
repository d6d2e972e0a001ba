"""Atelier's inference service side by side with PyTriton and LitServe: same machine, same models,
same load generator.

Models (TorchScript, random weights, seed 0, saved once and loaded by every server):
- `resnet`: a small ResNet (4 stages of one basic block, 32-256 channels), input FP32 [B, 3, 64, 64],
  ~130 MFLOP per sample (counted below): compute-bound.
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

    .venv/bin/python benchmarks/inference_vs_peers.py --seconds 10 [--write-docs] [--peers atelier,pytriton]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script (here or in a peer's venv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inference_report import SECTION, Cell, Report, describe, render, write_docs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work"
RUN = WORK / "inference-run"
PYTHON = REPO / ".venv" / "bin" / "python"
PEER_PACKAGES = {"pytriton": "nvidia-pytriton==0.7.0", "litserve": "litserve==0.2.19"}
SHAPES = {"resnet": (3, 64, 64), "mlp": (64,)}
MAX_BATCH = 64
INSTANCES = 2
START_TIMEOUT = 300.0
CLOCK = os.sysconf("SC_CLK_TCK")


# Models -----------------------------------------------------------------------------------------


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


# /proc: CPU, memory, the machine's load -------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and every descendant alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes (those gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK


def rss_mib(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(match.group(1)) if match else 0
    return total / 1024


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine used since boot (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK


# The load generator (a process of its own) ------------------------------------------------------


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
    cpu0, wall0 = _own_cpu(), time.perf_counter()
    await asyncio.sleep(load.seconds)
    phase["measuring"] = False
    wall, cpu = time.perf_counter() - wall0, _own_cpu() - cpu0
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


def _own_cpu() -> float:
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


# The model alone, in this process ------------------------------------------------------------


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

            started, cpu = time.perf_counter(), _own_cpu()
            pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            results[f"{threads}x{torch_threads}"] = sum(counts) / (time.perf_counter() - started)
            per_cpu[f"{threads}x{torch_threads}"] = sum(counts) / max(_own_cpu() - cpu, 1e-9)
        torch.set_num_threads(1)
        times = []
        for _ in range(int(args.get("single", 300))):
            started = time.perf_counter()
            model(one)
            times.append(time.perf_counter() - started)
    own_ms = statistics.median(times) * 1000
    print("RESULT " + json.dumps({"limit": results, "per_cpu": per_cpu, "own_ms": own_ms}), flush=True)


# Peers' servers (run by this file in the peer's own venv) ------------------------------------


def pytriton_main(spec: str) -> None:
    import numpy as np
    import torch
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    args = json.loads(spec)
    torch.set_num_threads(1)
    config = TritonConfig(
        grpc_port=args["grpc_port"], http_port=args["http_port"], metrics_port=args["metrics_port"], log_verbose=0
    )
    with Triton(config=config) as triton:
        for name in SHAPES:
            functions = []
            for _ in range(INSTANCES):
                model = torch.jit.load(str(Path(args["models"]) / f"{name}.pt"))  # type: ignore[no-untyped-call]

                @batch  # type: ignore[untyped-decorator]
                def infer(input: Any, model: Any = model) -> dict[str, Any]:  # noqa: A002 - the tensor's name
                    with torch.no_grad():
                        return {"output": model(torch.from_numpy(input)).numpy()}

                functions.append(infer)
            triton.bind(
                model_name=name,
                infer_func=functions,
                inputs=[Tensor(name="input", dtype=np.float32, shape=SHAPES[name])],
                outputs=[Tensor(name="output", dtype=np.float32, shape=(10,))],
                config=ModelConfig(max_batch_size=MAX_BATCH, batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
                strict=False,
            )
        triton.serve()


def litserve_main(spec: str) -> None:
    import litserve as ls

    args = json.loads(spec)
    api = make_litserve_api()(max_batch_size=MAX_BATCH, batch_timeout=0.0005)
    api.path, api.name = args["path"], args["model"]  # instance attributes travel to the worker processes
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=INSTANCES)
    server.run(host="127.0.0.1", port=args["port"], log_level="warning", generate_client_file=False)


def make_litserve_api() -> Any:
    """LitServe's API class, made once at module level: its worker processes unpickle it by name."""
    global LitServeAPI  # noqa: PLW0603 - LitServe is only importable in its own venv
    if LitServeAPI is not None:
        return LitServeAPI
    import litserve as ls
    import numpy as np
    import torch

    class API(ls.LitAPI):  # type: ignore[misc]
        path = ""
        name = ""

        def setup(self, device: str) -> None:
            torch.set_num_threads(1)
            self.model = torch.jit.load(self.path)  # type: ignore[no-untyped-call]

        def decode_request(self, request: dict[str, Any]) -> Any:
            raw = base64.b64decode(request["input"])
            return np.frombuffer(raw, dtype=np.float32).reshape(request["shape"])

        def batch(self, inputs: list[Any]) -> Any:
            return np.stack(inputs)

        def predict(self, x: Any) -> Any:
            with torch.no_grad():
                return self.model(torch.from_numpy(np.ascontiguousarray(x))).numpy()

        def unbatch(self, output: Any) -> list[Any]:
            return list(output)

        def encode_response(self, output: Any) -> dict[str, Any]:
            return {"output": output.tolist(), "model": self.name}

    # LitServe turns these annotations into FastAPI's body and response types; without them it passes the
    # parsed JSON as is (as its examples do).
    API.decode_request.__annotations__.pop("request")
    API.encode_response.__annotations__.pop("return")
    API.__qualname__ = API.__name__ = "LitServeAPI"
    LitServeAPI = API
    return API


LitServeAPI: Any = None
if os.environ.get("BENCH_LITSERVE_API") == "1":  # a LitServe worker unpickling the API: define it first
    make_litserve_api()


# Starting, waiting for and stopping servers -----------------------------------------------------


@dataclass
class Server:
    name: str
    pid: int
    urls: dict[str, str]  # protocol -> url
    pausable: bool = False
    """Started by this script in a session of its own, so its whole process group can be paused."""


@contextmanager
def idle_paused(servers: Sequence[Server], measured: Server | None = None) -> Iterator[None]:
    """The peers' servers other than `measured` stopped (SIGSTOP to their process groups) while a cell
    or a limit is measured, and continued after: LitServe's idle workers poll, and between them took
    about 0.65 cores of the two, in every cell, while all servers stayed up at once."""
    groups = sorted({os.getpgid(s.pid) for s in servers if s.pausable and s is not measured and _alive(s.pid)})
    for group in groups:
        os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGCONT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATELIER_", "OTEL_"))}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def peer_python(peer: str, log: Callable[[str], None]) -> Path | str:
    """The peer venv's Python, installing the peer first when needed; or why it cannot run here."""
    venv = WORK / f"{peer}-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists():
        log(f"installing {PEER_PACKAGES[peer]} into {venv.relative_to(REPO)} (first run)")
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [_base_python(), "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", PEER_PACKAGES[peer]],
        ]
        for command in steps:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
            if done.returncode != 0:
                lines = [line for line in (done.stderr or done.stdout).splitlines() if not line.startswith("WARNING")]
                return f"`{' '.join(command[-3:])}` failed: {' '.join(lines[-3:])[:300]}"
        site = subprocess.run(
            [str(PYTHON), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True
        ).stdout.strip()
        peer_site = next((venv / "lib").glob("python*/site-packages"))
        (peer_site / "zz_atelier_torch.pth").write_text(site + "\n")  # after the venv's own packages
        marker.write_text(PEER_PACKAGES[peer] + "\n")
    return python


def _base_python() -> str:
    """The interpreter the project's venv was made from (peers get venvs of their own)."""
    candidate = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(candidate if candidate.exists() else Path(sys.base_prefix) / "bin" / "python3")


def wait_ready(check: Callable[[], bool], process: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} was not ready within {START_TIMEOUT:.0f}s")


def triton_ready(http_url: str, models: Sequence[str]) -> Callable[[], bool]:
    def check() -> bool:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(url=http_url)
        try:
            return all(client.is_model_ready(m) for m in models)
        finally:
            client.close()

    return check


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def spawn(command: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def checked(command: list[str], env: dict[str, str]) -> None:
    """Run a setup command; a failure raises with the command and its first error line."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise RuntimeError(f"`{' '.join(command[2:6])}...` exited with {done.returncode}: {lines[-1][:300]}")


@contextmanager
def atelier_server(models: Path, grpc_server: str = "envoy") -> Iterator[Server]:
    """A fresh stack (`atelier up`) with both models registered as v1 and deployed; stopped at the end. With
    `grpc_server` envoy (the default), the inference service's gRPC port is Envoy's (the service runs inside it)."""
    home = RUN / "atelier-home"
    shutil.rmtree(home, ignore_errors=True)
    env = clean_env(ATELIER_HOME=str(home), ATELIER_INFERENCE_GRPC_SERVER=grpc_server)
    cli = [str(PYTHON), "-m", "atelier.cli.main"]
    checked([*cli, "up", "--detach", "--base-port", "0", "--timeout", "120"], env)
    try:
        register = (
            "import sys, torch, atelier\n"
            "with atelier.start_run(experiment='bench', capture_code=False) as run:\n"
            "    for name, shape in (('resnet', (3, 64, 64)), ('mlp', (64,))):\n"
            f"        model = torch.jit.load('{models}/' + name + '.pt')\n"
            "        run.log_model(model, torch.randn(2, *shape), name=name)\n"
        )
        checked([str(PYTHON), "-c", register], env)
        for name in SHAPES:
            checked(
                [*cli, "serve", "deploy", f"{name}@v1", "--name", name, "--instances", str(INSTANCES),
                 "--max-batch-size", str(MAX_BATCH), "--max-queue-delay-us", "0"],
                env,
            )  # fmt: skip
        published = json.loads((home / "run" / "inference.json").read_text())
        yield Server("Atelier", int(published["pid"]), {"grpc": published["address"], "http": published["http"]})
    finally:
        subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=120, check=False)


def pytriton_env() -> dict[str, str]:
    """The environment of the PyTriton server: its Python backend stub links `libpython3.X.so`, which must be
    the library of the interpreter whose standard library it runs with (not another build of 3.X)."""
    libdir = Path(sys.base_prefix) / "lib"
    if not list(libdir.glob(f"libpython{sys.version_info.major}.{sys.version_info.minor}*.so*")):
        return clean_env()
    return clean_env(LD_LIBRARY_PATH=os.pathsep.join(p for p in (str(libdir), os.environ.get("LD_LIBRARY_PATH")) if p))


PYTRITON_STARTS = 3
"""PyTriton's model stubs wait 1 s (fixed) for their handshake with its proxy; on a loaded machine that
sometimes passes and the model fails to load. The script tries this many fresh starts."""


@contextmanager
def pytriton_server(python: Path, models: Path, log: Callable[[str], None]) -> Iterator[Server]:
    for attempt in range(1, PYTRITON_STARTS + 1):
        ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port()}
        spec = json.dumps({**ports, "models": str(models)})
        log_file = RUN / f"pytriton-{attempt}.log"
        process = spawn([str(python), __file__, "--serve-pytriton", spec], log_file, pytriton_env())
        http_url = f"127.0.0.1:{ports['http_port']}"
        try:
            wait_ready(triton_ready(http_url, list(SHAPES)), process, "PyTriton")
        except RuntimeError as error:
            stop(process)
            handshake = "handshake" in log_file.read_text(errors="replace")
            why = f"{error}{' (a model stub timed out on its 1 s handshake)' if handshake else ''}"
            if attempt == PYTRITON_STARTS:
                raise RuntimeError(
                    f"{why}; {PYTRITON_STARTS} starts (logs: {log_file.parent.relative_to(REPO)})"
                ) from error
            log(f"PyTriton start {attempt} failed: {why}; starting again")
            continue
        try:
            urls = {"grpc": f"127.0.0.1:{ports['grpc_port']}", "http": http_url}
            yield Server("PyTriton", process.pid, urls, pausable=True)
        finally:
            stop(process)
        return


@contextmanager
def litserve_server(python: Path, models: Path, name: str) -> Iterator[Server]:
    port = free_port()
    spec = json.dumps({"model": name, "path": str(models / f"{name}.pt"), "port": port})
    env = clean_env(BENCH_LITSERVE_API="1")
    process = spawn([str(python), __file__, "--serve-litserve", spec], RUN / f"litserve-{name}.log", env)
    try:

        def healthy() -> bool:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                return bool(response.status == 200)

        wait_ready(healthy, process, "LitServe")
        yield Server("LitServe", process.pid, {"litserve": f"127.0.0.1:{port}"}, pausable=True)
    finally:
        stop(process)


# Measuring ------------------------------------------------------------------------------------


def measure(server: Server, model: str, protocol: str, concurrency: int, seconds: float, log: Callable[[str], None],
            sample_memory: bool = False) -> Cell:  # fmt: skip
    """Run the load generator against `server` and read the CPU of both sides over its window."""
    load = Load(protocol, server.urls[protocol], model, concurrency, seconds, warmup=min(3.0, max(1.0, seconds / 5)))
    command = [str(PYTHON), __file__, "--worker", json.dumps(asdict(load))]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=clean_env(), cwd=REPO)
    assert worker.stdout is not None
    cell = Cell(model, server.name, protocol, concurrency, seconds=seconds)
    marks: dict[str, tuple[float, float, float]] = {}
    result: dict[str, Any] = {}
    for line in worker.stdout:
        if line.startswith(("MEASURING", "DONE")):
            tree = process_tree(server.pid)
            marks[line.strip()] = (cpu_seconds(tree), machine_busy_seconds(), time.perf_counter())
            if sample_memory:
                cell.rss_mib.append(rss_mib(tree))
        elif line.startswith("RESULT "):
            result = json.loads(line[7:])
    worker.wait()
    if not result or set(marks) != {"MEASURING", "DONE"}:
        raise RuntimeError(f"the load generator failed against {server.name} ({protocol}, {model})")
    (server0, busy0, wall0), (server1, busy1, wall1) = marks["MEASURING"], marks["DONE"]
    wall = wall1 - wall0
    cell.requests_per_s = result["requests"] / result["wall"]
    cell.p50_ms, cell.p99_ms = result["p50_ms"], result["p99_ms"]
    cell.errors, cell.first_error = result["errors"], result["first_error"]
    cell.client_cores = result["client_cpu"] / result["wall"]
    cell.server_cores = (server1 - server0) / wall
    cell.other_cores = max(0.0, (busy1 - busy0) / wall - cell.server_cores - cell.client_cores)
    log(describe(cell))
    return cell


def measure_soak(server: Server, seconds: float, log: Callable[[str], None]) -> Cell:
    """256 concurrent gRPC callers on the MLP for `seconds`, the server's memory sampled every 2 s."""
    import threading

    samples: list[float] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(2.0):
            samples.append(rss_mib(process_tree(server.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cell = measure(server, "mlp", "grpc", 256, seconds, log, sample_memory=True)
    finally:
        stop_sampling.set()
        sampler.join()
    cell.rss_mib = [cell.rss_mib[0], *samples, cell.rss_mib[-1]] if cell.rss_mib else samples
    return cell


def run_limit(models: Path, model: str, seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    spec = json.dumps({"path": str(models / f"{model}.pt"), "model": model, "seconds": seconds})
    busy0, wall0 = machine_busy_seconds(), time.perf_counter()
    done = subprocess.run([str(PYTHON), __file__, "--limit", spec], capture_output=True, text=True, env=clean_env())
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), "")
    if not line:
        raise RuntimeError(f"the in-process limit of {model} failed: {done.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(line[7:])
    result["busy_cores"] = (machine_busy_seconds() - busy0) / (time.perf_counter() - wall0)
    if not result["limit"]:
        log(f"in-process {model}, batch 1: {result['own_ms']:.3f} ms")
        return result
    rates = ", ".join(f"{k} {v:,.0f}/s ({result['per_cpu'][k]:,.0f} per CPU-s)" for k, v in result["limit"].items())
    log(f"in-process {model} (threads x torch threads): {rates}; batch 1: {result['own_ms']:.3f} ms")
    return result


# Main -----------------------------------------------------------------------------------------


def plan(c: int) -> list[tuple[str, int, dict[str, str]]]:
    """The cells: (model, clients, the protocol each server is called with)."""
    return [
        ("resnet", c, {"Atelier": "grpc", "PyTriton": "grpc", "LitServe": "litserve"}),
        ("mlp", c, {"Atelier": "grpc", "PyTriton": "grpc"}),
        ("mlp", c, {"Atelier": "http", "PyTriton": "http", "LitServe": "litserve"}),
        ("mlp", 1, {"Atelier": "grpc", "PyTriton": "grpc"}),
        ("resnet", 1, {"Atelier": "grpc", "PyTriton": "grpc"}),
    ]


def start_servers(
    stack: ExitStack,
    peers: set[str],
    models: Path,
    report: Report,
    log: Callable[[str], None],
    grpc_server: str = "envoy",
) -> dict[tuple[str, str], Server]:
    """Every server asked for, all up at once (idle while another is measured): (server, model) -> Server."""
    servers: dict[tuple[str, str], Server] = {}
    if "pytriton" in peers:
        python = peer_python("pytriton", log)
        if isinstance(python, str):
            report.unavailable["PyTriton"] = python
        else:
            report.versions["PyTriton"] = PEER_PACKAGES["pytriton"]
            log("starting PyTriton")
            try:
                triton = stack.enter_context(pytriton_server(python, models, log))
                servers.update({("PyTriton", m): triton for m in SHAPES})
            except RuntimeError as error:
                report.unavailable["PyTriton"] = str(error)
    if "atelier" in peers:
        log("starting Atelier (atelier up, register, deploy)")
        atelier = stack.enter_context(atelier_server(models, grpc_server))
        servers.update({("Atelier", m): atelier for m in SHAPES})
    if "litserve" in peers:
        python = peer_python("litserve", log)
        if isinstance(python, str):
            report.unavailable["LitServe"] = python
        else:
            report.versions["LitServe"] = PEER_PACKAGES["litserve"]
            for model in SHAPES:
                log(f"starting LitServe ({model})")
                try:
                    servers[("LitServe", model)] = stack.enter_context(litserve_server(python, models, model))
                except RuntimeError as error:
                    log_file = (RUN / f"litserve-{model}.log").relative_to(REPO)
                    report.unavailable["LitServe"] = f"{error} (log: {log_file})"
    return servers


def run_all(args: argparse.Namespace, log: Callable[[str], None]) -> Report:
    """Cell by cell, the servers one after another (their order rotating each round), all in one run."""
    report = Report(load_before=os.getloadavg(), models=tuple(SHAPES), max_batch=MAX_BATCH)
    shutil.rmtree(RUN, ignore_errors=True)
    models = RUN / "models"
    report.flops = build_models(models)
    log(f"models: resnet {report.flops['resnet']:.0f} MFLOP/sample, mlp {report.flops['mlp'] * 1000:.1f} kFLOP/sample")
    for model in SHAPES:
        report.limits[model] = run_limit(models, model, args.seconds, log)
    with ExitStack() as stack:
        servers = start_servers(stack, args.peers, models, report, log, args.atelier_grpc_server)
        for round_number in range(args.rounds):
            log(f"round {round_number + 1} of {args.rounds}")
            for model, clients, protocols in plan(args.concurrency):
                names = [name for name in protocols if (name, model) in servers]
                if not names:
                    continue
                shift = round_number % len(names)
                limit: dict[str, Any] = {"limit": {"": 0.0}, "per_cpu": {"": 0.0}, "own_ms": 0.0}
                everyone = list(servers.values())
                if model == "resnet" and clients > 1:  # the compute-bound cells' own limit, measured just before
                    with idle_paused(everyone):
                        limit = run_limit(models, model, args.seconds, log)
                elif clients == 1:  # the model's own time at batch 1, just before
                    with idle_paused(everyone):
                        own_ms = run_limit(models, model, 0, log)["own_ms"]
                    limit = {"limit": {"": 0.0}, "per_cpu": {"": 0.0}, "own_ms": own_ms}
                for name in names[shift:] + names[:shift]:
                    with idle_paused(everyone, servers[(name, model)]):
                        cell = measure(servers[(name, model)], model, protocols[name], clients, args.seconds, log)
                    cell.limit = max(limit["limit"].values())
                    cell.limit_per_cpu = max(limit["per_cpu"].values())
                    cell.own_ms = float(limit["own_ms"])
                    report.cells.append(cell)
        if args.soak_seconds > 0 and ("Atelier", "mlp") in servers:
            with idle_paused(list(servers.values())):
                report.soak = measure_soak(servers[("Atelier", "mlp")], args.soak_seconds, log)
    for name, why in report.unavailable.items():
        log(f"{name} not measured: {why}")
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="cells repeated, servers rotating (default 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="clients of the throughput cells (default 64)")
    parser.add_argument("--soak-seconds", type=float, default=60.0, help="256-client soak on Atelier; 0 skips it")
    parser.add_argument("--peers", default="atelier,pytriton,litserve", help="which servers (comma-separated)")
    parser.add_argument("--atelier-grpc-server", choices=("envoy", "grpc.aio"), default="envoy",
                        help="the inference service's ATELIER_INFERENCE_GRPC_SERVER (default envoy, the service's "
                        "default: its gRPC port is Envoy's)")  # fmt: skip
    parser.add_argument("--write-docs", action="store_true", help=f"replace '{SECTION}' in docs/performance.md")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args(argv)
    args.peers = {p.strip().lower() for p in args.peers.split(",") if p.strip()}
    unknown = args.peers - {"atelier", "pytriton", "litserve"}
    if unknown or not args.peers:
        parser.error(f"--peers {','.join(sorted(unknown)) or '(empty)'}: choose from atelier, pytriton, litserve")
    if args.seconds <= 0 or args.concurrency < 1 or args.soak_seconds < 0 or args.rounds < 1:
        parser.error("need --seconds > 0, --concurrency >= 1, --rounds >= 1 and --soak-seconds >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    raw = list(sys.argv[1:] if argv is None else argv)
    modes = {"--worker": worker_main, "--limit": limit_main, "--serve-pytriton": pytriton_main,
             "--serve-litserve": litserve_main}  # fmt: skip
    if len(raw) == 2 and raw[0] in modes:
        modes[raw[0]](raw[1])
        return
    args = parse_args(raw)

    def log(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    report = run_all(args, log)
    body = render(report, args)
    print(body)
    if args.json:
        print(json.dumps({"cells": [asdict(c) for c in report.cells], "limits": report.limits}, indent=2))
    if args.write_docs:
        write_docs(body)


if __name__ == "__main__":
    main()
