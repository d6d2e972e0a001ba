"""Starting, waiting for, pausing and stopping the servers: Atelier's stack, PyTriton and LitServe."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.inference_report import Report
from benchmarks.paths import PYTHON, REPO, WORK

from .config import ENTRY, INSTANCES, MAX_BATCH, PEER_PACKAGES, RUN, SHAPES, START_TIMEOUT


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
        process = spawn([str(python), *ENTRY, "--serve-pytriton", spec], log_file, pytriton_env())
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
    process = spawn([str(python), *ENTRY, "--serve-litserve", spec], RUN / f"litserve-{name}.log", env)
    try:

        def healthy() -> bool:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                return bool(response.status == 200)

        wait_ready(healthy, process, "LitServe")
        yield Server("LitServe", process.pid, {"litserve": f"127.0.0.1:{port}"}, pausable=True)
    finally:
        stop(process)


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
