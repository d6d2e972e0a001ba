"""`python -m demo` (what `make demo` runs), end to end: real data, a real stack, always stopped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from atelier.stack.addresses import pid_alive

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_SECONDS = 800  # a loaded 2-core machine runs the whole demo in ~1-5 min


def _env() -> dict[str, str]:
    """This environment without any other stack's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}


def run_demo(*args: str, timeout: float = DEMO_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    """`python -m demo ARGS...` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "demo", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _stop_stack(home: Path) -> None:
    """Stop a stack a demo that was killed may have left in `home`."""
    subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", "--home", str(home), "down"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        timeout=60,
    )


def test_demo_runs_every_chapter_and_stops_its_stack(tmp_path: Path) -> None:
    work = tmp_path / "work"
    try:
        result = run_demo("--work-dir", str(work))
    except subprocess.TimeoutExpired:
        _stop_stack(work / "home")
        raise

    assert result.returncode == 0, result.stdout + result.stderr
    assert "logged in as users/ada" in result.stdout
    assert "bob was refused: no role in project 'default'" in result.stdout
    assert not re.search(r"atl_[0-9a-f]{16}_", result.stdout), "the demo must not print token secrets"
    assert "verified 1798 files byte for byte" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    stopped = [int(pid) for pid in re.findall(r"stopped data \(pid (\d+)\)", result.stdout)]
    assert stopped, result.stdout
    assert not any(pid_alive(pid) for pid in stopped)
    assert "both nodes trained together" in result.stdout
    agents = [int(pid) for pid in re.findall(r"started agent \w+ \(pid (\d+)\)", result.stdout)]
    assert len(agents) == 2, result.stdout
    assert not any(pid_alive(pid) for pid in agents), "the demo's agents should be stopped"
    check_inference_chapter(result.stdout)
    assert re.search(r"^  DRIFT: \d+ of 64 pixel features drifted", result.stdout, re.MULTILINE), result.stdout
    assert not work.exists(), "the working files should be removed without --keep"


def check_inference_chapter(stdout: str) -> None:
    """Chapter 4: the held-out images classified over both protocols, then a live switch of versions."""
    accuracies = dict(re.findall(r"^  (gRPC|REST) +accuracy (\d\.\d+) \(\d+/360\)", stdout, re.MULTILINE))
    assert set(accuracies) == {"gRPC", "REST"}, stdout
    assert all(float(a) > 0.8 for a in accuracies.values()), accuracies
    assert re.search(r"latency per request p50 \d+\.\d+ ms, p99 \d+\.\d+ ms", stdout), stdout
    switch = re.search(
        r"switched from v(\d+) to v(\d+) while both clients called: (\d+) of (\d+) requests failed", stdout
    )
    assert switch, stdout
    old, new, failed, sent = switch.groups()
    assert old != new
    assert failed == "0"
    assert int(sent) > 0
    for protocol in ("gRPC", "REST"):
        line = re.search(
            rf"{protocol}: (\d+) requests, (\d+) answered by v(\d+), (\d+) answered by v(\d+), 0 failed", stdout
        )
        assert line, stdout
        assert (line[3], line[5]) == tuple(sorted((old, new), key=int)), line[0]
        assert int(line[2]) > 0
        assert int(line[4]) > 0
    assert re.search(rf"│ digits +│ digits@production +│ v{new} +│ cpu +│ READY", stdout), stdout
    assert re.search(rf"now: gRPC +accuracy \d\.\d+ \(\d+/360\), .*answered by v{new}\b", stdout), stdout


def test_demo_refuses_a_work_dir_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")

    result = run_demo("--work-dir", str(tmp_path), timeout=60)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: --work-dir {tmp_path} is not an empty directory"]
    assert (tmp_path / "something").exists()
