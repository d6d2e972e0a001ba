"""Slurm jobs while they run: cancel, the time limit, logs followed live, torchrun DDP under srun."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.scheduler.conftest import Cluster
from tests.integration.scheduler.slurm.slurm_cluster import Slurm
from tests.integration.scheduler.slurm.test_slurm_jobs import ENDED, log_text, python_job, slurm_job

DDP_SCRIPT = Path(__file__).resolve().parents[1] / "ddp_train.py"
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def wait_for_line(cluster: Cluster, name: str, text: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(line.text == text for page in cluster.client.logs(name) for line in page.lines):
        assert time.monotonic() < deadline, f"{name} never printed {text!r}"
        time.sleep(0.2)


def wait_until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (callable(condition) and condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def waits_for(path: Path, before: str = "started", after: str = "") -> str:
    """Python code that prints `before` (and its pid to `path`.pid), waits for `path`, prints `after`."""
    return (
        "import os, time, pathlib; "
        f"pathlib.Path({str(path) + '.pid'!r}).write_text(str(os.getpid())); print({before!r}, flush=True); "
        f"[time.sleep(0.1) for _ in iter(lambda: pathlib.Path({str(path)!r}).exists(), True)]; print({after!r})"
    )


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while /proc is read
        return False


@pytest.mark.timeout(240)
def test_cancel_of_a_running_job_goes_to_scancel(scheduler: Cluster, slurm: Slurm, tmp_path: Path) -> None:
    never = tmp_path / "never"
    job = scheduler.client.submit("lab", python_job(waits_for(never)))
    running = scheduler.wait_for(job.name, (pb.JOB_STATE_RUNNING,), timeout=120)
    wait_for_line(scheduler, job.name, "started")
    pid = int(Path(str(never) + ".pid").read_text())

    cancelled = scheduler.client.cancel(job.name)
    assert cancelled.state == pb.JOB_STATE_CANCELLED
    assert cancelled.reason == "cancelled by a user"
    wait_until(lambda: not alive(pid), "the job's process outlived scancel")
    wait_until(lambda: "JobState=CANCELLED" in slurm_job(slurm, running.external_id), "Slurm never cancelled it")
    assert [a.outcome for a in scheduler.client.get_job(job.name).attempts] == [pb.JOB_STATE_CANCELLED]


@pytest.mark.timeout(300)
def test_a_job_past_its_time_limit_fails_with_timeout(scheduler: Cluster, slurm: Slurm, tmp_path: Path) -> None:
    job = python_job(waits_for(tmp_path / "never"))
    job.max_run_time.FromSeconds(20)  # Slurm limits are whole minutes: this asks for one
    submitted = scheduler.client.submit("lab", job)
    running = scheduler.wait_for(submitted.name, (pb.JOB_STATE_RUNNING,), timeout=120)
    assert "TimeLimit=00:01:00" in slurm_job(slurm, running.external_id)
    done = scheduler.wait_for(submitted.name, ENDED, timeout=200)
    assert done.state == pb.JOB_STATE_FAILED
    assert "reached its time limit (TIMEOUT)" in done.reason
    assert "started" in log_text(scheduler, submitted.name)


@pytest.mark.timeout(240)
def test_logs_are_followed_live_and_read_after_the_end(scheduler: Cluster, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job = scheduler.client.submit("lab", python_job(waits_for(go, "first", "second")))
    seen: list[tuple[str, int]] = []
    for page in scheduler.client.logs(job.name, follow=True):
        for line in page.lines:
            seen.append((line.text, page.state))
            if line.text == "first":
                go.touch()  # the job goes on only once its first line reached the follower
    texts = [text for text, _ in seen]
    assert texts[-2:] == ["first", "second"]
    assert dict(seen)["first"] == pb.JOB_STATE_RUNNING  # it arrived while the job ran
    assert scheduler.client.get_job(job.name).state == pb.JOB_STATE_SUCCEEDED
    assert log_text(scheduler, job.name) == texts  # and reads the same after the end


@pytest.mark.timeout(300)
def test_torchrun_ddp_runs_under_srun_on_the_a100_pair(scheduler: Cluster, slurm: Slurm) -> None:
    job = pb.Job(
        command=["python", str(DDP_SCRIPT)],
        resources=pb.Resources(nodes=1, gpus_per_node=2, precision=pb.PRECISION_BF16),
        env={"OMP_NUM_THREADS": "1"},
    )
    submitted = scheduler.client.submit("lab", job, "ddp")
    done = scheduler.wait_for(submitted.name, ENDED, timeout=240)
    text = log_text(scheduler, submitted.name)
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(text)
    assert "TresPerNode=gres:gpu:a100:2" in slurm_job(slurm, done.external_id)
    result = json.loads(next(t for t in text if t.startswith("RESULT ")).removeprefix("RESULT "))
    assert result["world"] == 2
    assert result["allreduce"] == 1 + 2
    assert result["same"] is True
    assert result["last"] < result["first"] / 10
    assert sorted(t.split()[0] for t in text if t.startswith("rank=")) == ["rank=0", "rank=1"]
    assert any("cuda_visible=0,1" in t for t in text), text
    assert os.environ.get("SLURM_JOB_ID") is None  # the test itself is not a Slurm job
