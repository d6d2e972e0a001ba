"""GPUs held by jobs Slurm runs count toward their project's fair-share usage, as the agents' jobs do,
and that usage is kept in the database across a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.scheduler.conftest import Cluster
from tests.integration.scheduler.slurm.conftest import SlurmScheduler
from tests.integration.scheduler.slurm.test_slurm_jobs import ENDED, python_job
from tests.integration.scheduler.slurm.test_slurm_running import waits_for
from tests.prometheus import Samples, scrape, value

pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), pytest.mark.timeout(240)]
USAGE = "atelier_scheduler_fair_share_usage_gpu_seconds"


def scraped_when(cluster: Cluster, project: str, above: float) -> Samples:
    """Scrape until `project`'s usage exceeds `above`."""
    deadline = time.monotonic() + 60
    while True:
        samples = scrape(cluster.metrics_address)
        if value(samples, USAGE, project=project) > above:
            return samples
        assert time.monotonic() < deadline, f"the usage of {project} stayed at {value(samples, USAGE, project=project)}"
        time.sleep(0.2)


def test_a_running_slurm_job_accrues_its_projects_usage(schedulers: SlurmScheduler, tmp_path: Path) -> None:
    settings = {"address_file": schedulers.home / "run" / "scheduler.json", "usage_save_interval_seconds": 0}
    cluster = schedulers.start(**settings)
    gpus, cpus = tmp_path / "gpus", tmp_path / "cpus"
    trained = cluster.client.submit("vision", python_job(waits_for(gpus), gpus=2))
    counted = cluster.client.submit("speech", python_job(waits_for(cpus), gpus=0))
    for job in (trained, counted):
        cluster.wait_for(job.name, (pb.JOB_STATE_RUNNING,), timeout=120)

    samples = scraped_when(cluster, "vision", 0.0)
    assert value(samples, USAGE, project="speech") == 0  # a job without GPUs uses no GPU time
    assert value(samples, "atelier_scheduler_fair_share_factor", project="vision") < 1
    gpus.touch()
    cpus.touch()
    for job in (trained, counted):
        assert cluster.wait_for(job.name, ENDED, timeout=120).state == pb.JOB_STATE_SUCCEEDED
    used = value(scraped_when(cluster, "vision", 0.0), USAGE, project="vision")
    schedulers.stop(cluster)

    restarted = schedulers.start(**settings)
    kept = value(scraped_when(restarted, "vision", 0.0), USAGE, project="vision")
    assert 0 < kept <= used  # read back, decayed (a week's half-life: barely)
    assert value(scrape(restarted.metrics_address), USAGE, project="speech") == 0
