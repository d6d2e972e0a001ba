"""`atelier jobs|cluster` as a user runs them, against a node driven by a real agent process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.scheduler.conftest import Cluster

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def atelier(cluster: Cluster, tmp_path: Path, *args: str, ok: bool = True) -> Any:
    env = {**os.environ, "ATELIER_SCHEDULER_ADDRESS": cluster.address, "ATELIER_PROJECT": "lab", "USER": "ana"}
    result = subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return json.loads(result.stdout) if "--json" in args and ok else result


def test_submit_follow_show_and_cluster(cluster: Cluster, start_agent: Callable[..., object], tmp_path: Path) -> None:
    start_agent("gpu-1", "L4", "L4")
    (tmp_path / "hello.py").write_text(
        # One write per line: the two ranks share the log, and print's separate writes could interleave.
        "import os, sys\nsys.stdout.write(f\"hello from rank {os.environ['RANK']}\\n\")\n"
    )
    followed = atelier(
        cluster,
        tmp_path,
        "jobs",
        "submit",
        "--name",
        "hello",
        "--gpus-per-node",
        "2",
        "--min-gpu-memory",
        "16GiB",
        "--precision",
        "bf16",
        "--follow",
        "--",
        "python",
        "hello.py",
    )
    assert "hello from rank 0" in followed.stdout
    assert "hello from rank 1" in followed.stdout
    assert "SUCCEEDED" in followed.stdout

    shown = atelier(cluster, tmp_path, "jobs", "show", "hello", "--json")
    assert shown["state"] == "JOB_STATE_SUCCEEDED"
    assert shown["placement"]["nodes"][0]["node"] == "nodes/gpu-1"
    listed = atelier(cluster, tmp_path, "jobs", "ls", "--json")
    assert [j["name"] for j in listed] == ["projects/lab/jobs/hello"]
    assert atelier(cluster, tmp_path, "jobs", "ls").stdout.splitlines()[1].split()[0] == "hello"
    nodes = atelier(cluster, tmp_path, "cluster", "--json")
    assert [c["model"] for c in nodes[0]["cards"]] == ["L4", "L4"]
    assert "PRECISION_FP8" in nodes[0]["cards"][0]["precisions"]
    assert nodes[0]["freeCpus"] == nodes[0]["cpus"]  # the job ended: it holds nothing


def test_a_job_can_start_in_its_own_directory(
    cluster: Cluster, start_agent: Callable[..., object], tmp_path: Path
) -> None:
    start_agent("gpu-1", "L4")
    script = tmp_path / "where.py"
    script.write_text("import os, sys\nsys.stdout.write('cwd=' + os.getcwd() + '\\n')\n")
    submit = ["jobs", "submit", "--name", "here", "-g", "1", "--workdir", ".", "--follow"]
    followed = atelier(cluster, tmp_path, *submit, "--", "python", str(script))
    cwd = next(line for line in followed.stdout.splitlines() if "cwd=" in line).split("cwd=", 1)[1]
    assert cwd.endswith("/jobs/lab/here/attempt-0/rank-0")  # the job's own directory, not the submitter's


def test_errors_are_one_line(cluster: Cluster, start_agent: Callable[..., object], tmp_path: Path) -> None:
    start_agent("gpu-1", "T4")
    refused = atelier(
        cluster,
        tmp_path,
        "jobs",
        "submit",
        "--gpus-per-node",
        "1",
        "--precision",
        "bf16",
        "--",
        "python",
        "x.py",
        ok=False,
    )
    assert refused.stderr.startswith("error: no node has 1 GPU with bf16")
    assert len(refused.stderr.strip().splitlines()) == 1
    host = atelier(
        cluster,
        tmp_path,
        "jobs",
        "submit",
        "--gpus-per-node",
        "1",
        "--cpus-per-node",
        "4096",
        "--memory-per-node",
        "64TiB",
        "--",
        "python",
        "x.py",
        ok=False,
    )
    assert host.stderr.startswith(
        "error: no node has 1 GPU and 4096 CPUs and 65536 GiB host memory; largest: 1 x T4 (only "
    )
    bad = atelier(cluster, tmp_path, "jobs", "submit", "--precision", "fp4", "--", "python", "x.py", ok=False)
    assert "unknown precision 'fp4'; allowed: fp32, fp16, tf32, bf16, fp8" in bad.stderr
    assert list(cluster.client.list_jobs("lab")) == []


def test_following_a_job_that_fails_fails_the_command(
    cluster: Cluster, start_agent: Callable[..., object], tmp_path: Path
) -> None:
    start_agent("gpu-1", "L4")
    (tmp_path / "boom.py").write_text("import sys\nsys.stdout.write('about to fail\\n')\nsys.exit(3)\n")

    followed = atelier(
        cluster,
        tmp_path,
        *["jobs", "submit", "--name", "boom", "-g", "1", "--follow", "--", "python", "boom.py"],
        ok=False,
    )
    again = atelier(cluster, tmp_path, "jobs", "logs", "boom", "--follow", ok=False)

    assert followed.returncode == 1
    assert "about to fail" in followed.stdout
    assert "projects/lab/jobs/boom: FAILED" in followed.stdout
    assert again.returncode == 1
    assert "FAILED" in again.stdout
