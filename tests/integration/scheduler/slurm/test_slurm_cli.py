"""`atelier jobs submit --executor slurm` and `jobs show|logs` as a user runs them, against the real Slurm."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.scheduler.conftest import Cluster
from tests.integration.scheduler.slurm.conftest import SlurmScheduler
from tests.integration.scheduler.test_cli import atelier

pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), pytest.mark.timeout(240)]


def test_submit_to_slurm_follow_and_show(schedulers: SlurmScheduler, tmp_path: Path) -> None:
    cluster: Cluster = schedulers.start(default_executor="agents")  # slurm only because the user asks
    (tmp_path / "hello.py").write_text("import os\nprint('hello from slurm job', os.environ['SLURM_JOB_ID'])\n")
    followed = atelier(
        cluster,
        tmp_path,
        "jobs",
        "submit",
        "--name",
        "hello",
        "--executor",
        "slurm",
        "--gpus-per-node",
        "1",
        "--min-gpu-memory",
        "40GiB",
        "--follow",
        "--",
        "python",
        "hello.py",
    )
    shown = atelier(cluster, tmp_path, "jobs", "show", "hello", "--json")
    assert shown["state"] == "JOB_STATE_SUCCEEDED", followed.stdout
    assert shown["executor"] == "EXECUTOR_KIND_SLURM"
    assert f"hello from slurm job {shown['externalId']}" in followed.stdout
    assert "SUCCEEDED" in followed.stdout
    assert f"Slurm job: {shown['externalId']}" in atelier(cluster, tmp_path, "jobs", "show", "hello").stdout
    logs = atelier(cluster, tmp_path, "jobs", "logs", "hello").stdout
    assert f"submitted to Slurm as job {shown['externalId']}: --gres=gpu:a100:1" in logs

    refused = atelier(cluster, tmp_path, "jobs", "submit", "--executor", "pbs", "--", "python", "x.py", ok=False)
    assert "unknown executor 'pbs'; allowed: agents, slurm" in refused.stderr + refused.stdout
