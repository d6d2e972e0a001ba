"""Node agents for the demo: real `atelier agent` processes with declared inventories, always stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from demo.runner import DemoError, Runner

REGISTER_TIMEOUT_SECONDS = 60.0
"""How long an agent may take to appear in `atelier cluster`."""
STOP_TIMEOUT_SECONDS = 30.0


@contextmanager
def running_agents(runner: Runner, nodes: Mapping[str, dict[str, Any]]) -> Iterator[None]:
    """Start one `atelier agent` per node (inventory JSON per node id), wait until all registered,
    and stop them (SIGTERM, then SIGKILL) however the block ends."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for node, inventory in nodes.items():
            started.append(_start(runner, node, inventory))
            runner.info(f"started agent {node} (pid {started[-1].pid})")
        _wait_registered(runner, set(nodes), started)
        yield
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()


def _start(runner: Runner, node: str, inventory: dict[str, Any]) -> subprocess.Popen[bytes]:
    path = runner.work_dir / f"inventory-{node}.json"
    path.write_text(json.dumps(inventory, indent=2))
    args = ["agent", "--name", node, "--inventory", str(path), "--address", "127.0.0.1"]
    runner.info(f"$ atelier {' '.join(args)} &   (log: {path.with_suffix('.log').name})")
    log = path.with_suffix(".log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "atelier.cli.main", *args],
        cwd=runner.work_dir,
        env={**runner.env(), "ATELIER_TOKEN": runner.agent_token} if runner.agent_token else runner.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_registered(runner: Runner, names: set[str], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT_SECONDS
    while True:
        for process in processes:
            if process.poll() is not None:
                raise DemoError(f"an agent exited with code {process.returncode}; see its log in {runner.work_dir}")
        listed = runner.quiet_json("cluster")
        if names <= {node["name"].removeprefix("nodes/") for node in listed}:
            return
        if time.monotonic() > deadline:
            raise DemoError(
                f"agents {', '.join(sorted(names))} did not register within {REGISTER_TIMEOUT_SECONDS:.0f}s"
            )
        time.sleep(0.5)
