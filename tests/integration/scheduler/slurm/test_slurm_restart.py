"""A restarted scheduler re-adopts its Slurm jobs from the database; Slurm out of reach is told as such."""

from __future__ import annotations

import re
import sys
import time
import uuid
from pathlib import Path

import pytest

from atelier.errors import Unavailable
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.executors.base import Submission
from services.scheduler.executors.slurm.executor import CLOCK_SKEW_SECONDS, slurm_executor
from services.scheduler.executors.slurm.script import ScriptSettings
from services.scheduler.spec import resolve_shape
from tests.integration.scheduler.slurm.conftest import SlurmScheduler
from tests.integration.scheduler.slurm.slurm_cluster import GPU_TYPES, Slurm, free_port
from tests.integration.scheduler.slurm.test_slurm_jobs import ENDED, log_text, python_job
from tests.integration.scheduler.slurm.test_slurm_running import wait_for_line, wait_until, waits_for

pytestmark = pytest.mark.timeout(300)


def unreachable_conf(slurm: Slurm, folder: Path) -> Path:
    """The test Slurm's config with the controller on a port nobody listens on. The commands give up
    after MessageTimeout (10 s by default, 2 here: clients retry UNAVAILABLE within their deadline)."""
    text = re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={free_port()}", slurm.conf.read_text())
    text += "MessageTimeout=2\n"
    path = folder / "unreachable.conf"
    path.write_text(text)
    return path


def live_in_slurm(slurm: Slurm, external_id: str) -> bool:
    found = slurm.run("squeue", "--noheader", f"--jobs={external_id}", "--format=%T", check=False)
    return found.stdout.strip() in ("PENDING", "RUNNING", "COMPLETING")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_restarted_scheduler_readopts_its_slurm_jobs(
    schedulers: SlurmScheduler, slurm: Slurm, tmp_path: Path
) -> None:
    first = schedulers.start()
    finish, never = tmp_path / "finish", tmp_path / "never"
    ending = first.client.submit("lab", python_job(waits_for(finish, "before", "after")), "ending")
    staying = first.client.submit("lab", python_job(waits_for(never, "holding")), "staying")
    for job, line in ((ending, "before"), (staying, "holding")):
        first.wait_for(job.name, (pb.JOB_STATE_RUNNING,), timeout=120)
        wait_for_line(first, job.name, line)
    ended_id = first.client.get_job(ending.name).external_id
    schedulers.stop(first)

    finish.touch()  # `ending` ends in Slurm while no scheduler watches
    wait_until(lambda: not live_in_slurm(slurm, ended_id), "Slurm never saw the job end", 120)

    second = schedulers.start()
    done = second.wait_for(ending.name, ENDED, timeout=120)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    assert done.external_id == ended_id
    assert [line for line in log_text(second, ending.name) if not line.startswith("submitted")] == ["before", "after"]
    assert second.client.get_job(staying.name).state == pb.JOB_STATE_RUNNING
    schedulers.stop(second)

    cut_off = schedulers.start(slurm_conf=str(unreachable_conf(slurm, tmp_path)))
    # Slurm's words for a controller it cannot talk to: nobody on the port, or (when another process of
    # the parallel test run took the free port meanwhile) nobody answering there.
    unreachable = "Unable to contact slurm controller|Socket timed out on send/recv operation"
    with pytest.raises(Unavailable, match=f"Slurm is not reachable: .*({unreachable})"):
        cut_off.client.cancel(staying.name)
    assert cut_off.client.get_job(staying.name).state == pb.JOB_STATE_RUNNING  # nothing half done
    schedulers.stop(cut_off)

    third = schedulers.start()
    assert third.client.cancel(staying.name).state == pb.JOB_STATE_CANCELLED
    staying_id = third.client.get_job(staying.name).external_id
    wait_until(lambda: not live_in_slurm(slurm, staying_id), "scancel did not stop the re-adopted job", 60)
    assert log_text(third, staying.name).count("holding") == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_waits_with_the_reason_while_slurm_is_out_of_reach(
    schedulers: SlurmScheduler, slurm: Slurm, tmp_path: Path
) -> None:
    cut_off = schedulers.start(slurm_conf=str(unreachable_conf(slurm, tmp_path)))
    job = cut_off.client.submit("lab", python_job("print('hello')"))
    wait_until(lambda: "not reachable" in cut_off.client.get_job(job.name).reason, "no reason given", 60)
    waiting = cut_off.client.get_job(job.name)
    assert waiting.state == pb.JOB_STATE_PENDING
    assert waiting.reason.startswith("waiting: Slurm is not reachable: sbatch: error: Batch job submission failed")
    schedulers.stop(cut_off)

    reachable = schedulers.start()  # the same database: the job is handed over once Slurm answers
    done = reachable.wait_for(job.name, ENDED, timeout=120)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    assert "hello" in log_text(reachable, job.name)
    schedulers.stop(reachable)

    missing = schedulers.start(slurm_bin_dir=str(tmp_path / "no-slurm-here"))
    other = missing.client.submit("lab", python_job("print('hello')"))
    wait_until(lambda: "sbatch not found in" in missing.client.get_job(other.name).reason, "no reason given", 60)
    assert missing.client.cancel(other.name).state == pb.JOB_STATE_CANCELLED


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_sbatched_just_before_a_crash_is_adopted_not_submitted_again(
    schedulers: SlurmScheduler, slurm: Slurm, tmp_path: Path
) -> None:
    cut_off = schedulers.start(slurm_conf=str(unreachable_conf(slurm, tmp_path)))
    tag, hold = uuid.uuid4().hex[:8], tmp_path / "hold"
    quick = cut_off.client.submit("lab", python_job("print('quick ran')"), f"quick-{tag}")
    held = cut_off.client.submit("lab", python_job(waits_for(hold, "holding", "released")), f"held-{tag}")
    wait_until(lambda: "not reachable" in cut_off.client.get_job(quick.name).reason, "no reason given", 60)
    schedulers.stop(cut_off)  # (each round stops at the first job that cannot reach Slurm)

    # The crash: an sbatch of the first attempt (number 0) reached Slurm, its answer never reached the database.
    executor = slurm_executor(
        "",
        str(slurm.conf),
        20,
        GPU_TYPES,
        str(schedulers.work_dir),
        schedulers.home,
        "",
        ScriptSettings(sys.executable),
    )
    sbatched = {
        job.name: executor.submit(Submission(job.name, 0, job, resolve_shape(job.resources))).external_id
        for job in (quick, held)
    }
    wait_until(lambda: not live_in_slurm(slurm, sbatched[quick.name]), "the quick job never ended in Slurm", 120)

    restarted = schedulers.start()
    done = restarted.wait_for(quick.name, ENDED, timeout=120)  # ended: found through sacct
    lines = log_text(restarted, quick.name)
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(lines)
    assert done.external_id == sbatched[quick.name]
    found = "found in Slurm, submitted before (not submitted again)"
    assert lines[0] == f"submitted to Slurm as job {done.external_id}: --gres=gpu:1; {found}"
    assert lines.count("quick ran") == 1
    running = restarted.wait_for(held.name, (pb.JOB_STATE_RUNNING,), timeout=120)  # queued or running: squeue
    assert running.external_id == sbatched[held.name]
    hold.touch()
    assert restarted.wait_for(held.name, ENDED, timeout=120).state == pb.JOB_STATE_SUCCEEDED
    assert log_text(restarted, held.name).count("holding") == 1
    later = time.time() + 2 * CLOCK_SKEW_SECONDS  # e.g. a job created anew after its database was reset
    assert executor.find(f"atelier-lab-quick-{tag}-0", later) == ""
    assert executor.find(f"atelier-lab-quick-{tag}-0", 0) == sbatched[quick.name]
    ran = slurm.run("sacct", "--completion", "--noheader", "--parsable2", "--format=JobName").stdout.split()
    assert ran.count(f"atelier-lab-quick-{tag}-0") == 1
    assert ran.count(f"atelier-lab-held-{tag}-0") == 1
