"""Starting the inference service behind Envoy as `python -m services.inference` starts it, in a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atelier.stack.addresses import PublishedAddress, address_file, read_address_file
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]


def listening(pid: int) -> set[tuple[str, int]]:
    """The `(address, port)` pairs process `pid` listens on over TCP, from /proc (addresses as the
    kernel's hex: `00000000` is 0.0.0.0, `0100007F` 127.0.0.1; IPv6 ones are 32 digits)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # LISTEN
                address, port = local.split(":")
                found.add((address, int(port, 16)))
    return found


def envoy_environment(home: Path, **settings: str) -> dict[str, str]:
    """This process's environment without Atelier's or OpenTelemetry's variables, with the service
    behind Envoy on `home` and `settings` (full variable names) added."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ATELIER_", "OTEL_"))},
        "PYTHONPATH": str(REPO),
        "ATELIER_HOME": str(home),
        "ATELIER_INFERENCE_GRPC_SERVER": "envoy",
        "ATELIER_INFERENCE_LOG_FORMAT": "text",
        **settings,
    }


@contextmanager
def inference_in_envoy(
    home: Path, log: Path, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], PublishedAddress]]:
    """The service started behind Envoy (unless `settings` say otherwise), once its address file is
    written; stopped with SIGTERM after."""
    published = address_file(home, "inference")
    env = envoy_environment(home, ATELIER_INFERENCE_ADDRESS_FILE=str(published), **settings)
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "services.inference"], cwd=log.parent, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

    def started() -> PublishedAddress | None:
        assert process.poll() is None, log.read_text()[-3000:]
        return read_address_file(published)

    try:
        yield process, wait_for(started, "the service's start", timeout=120)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
