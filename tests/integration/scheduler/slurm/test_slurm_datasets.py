"""A Slurm job's dataset versions are pulled by its batch script (the `atelier` CLI, through a real data
service) into $ATELIER_DATA_DIR before its command runs; a pull that fails fails the job saying why."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atelier.client import DataClient
from atelier.datasets.push import push
from atelier.names import parse_dataset_ref
from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.scheduler.slurm.conftest import SlurmScheduler
from tests.integration.scheduler.slurm.test_slurm_jobs import ENDED, log_text, python_job

pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), pytest.mark.timeout(240)]
SHOW_DATA = (
    "import os, pathlib; root = pathlib.Path(os.environ['ATELIER_DATA_DIR']); "
    "[print('FILE', p.relative_to(root), p.read_text().strip()) for p in sorted(root.rglob('*.txt'))]"
)


@pytest.fixture
def data(serve: Callable[[Callable[[], Any]], str], tmp_path: Path) -> tuple[str, Path]:
    """A data service holding `lab/digits` v1 (two files); its address and object store."""
    from services.data.server import build
    from services.data.settings import DataSettings

    objects = tmp_path / "objects"
    address = serve(lambda: build(DataSettings(home=tmp_path / "data-home", object_store=str(objects))))
    files = tmp_path / "digits"
    (files / "train").mkdir(parents=True)
    (files / "train" / "a.txt").write_text("zero one\n")
    (files / "labels.txt").write_text("0 1\n")
    client = DataClient.at(address)
    try:
        push(client, files, parse_dataset_ref("digits", "lab"))
    finally:
        client.close()
    return address, objects


def test_a_slurm_job_sees_its_dataset_files(schedulers: SlurmScheduler, data: tuple[str, Path]) -> None:
    cluster = schedulers.start(data_address=data[0])
    job = python_job(SHOW_DATA, gpus=0, datasets=[pb.DatasetInput(dataset="digits@v1", path="inputs/digits")])
    submitted = cluster.client.submit("lab", job, "reads")
    assert submitted.datasets[0].version == "projects/lab/datasets/digits/versions/v1"
    done = cluster.wait_for(submitted.name, ENDED, timeout=120)
    lines = log_text(cluster, submitted.name)
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(lines)
    assert "FILE inputs/digits/labels.txt 0 1" in lines
    assert "FILE inputs/digits/train/a.txt zero one" in lines
    assert lines.index("atelier: fetched projects/lab/datasets/digits/versions/v1") < lines.index(
        "FILE inputs/digits/labels.txt 0 1"
    )
    assert (schedulers.work_dir / "lab" / "reads" / "data" / "inputs" / "digits" / "labels.txt").read_text() == "0 1\n"


def test_a_dataset_that_cannot_be_pulled_fails_the_job_with_the_reason(
    schedulers: SlurmScheduler, data: tuple[str, Path]
) -> None:
    address, objects = data
    shutil.rmtree(objects)  # the version is still listed, its content is gone
    cluster = schedulers.start(data_address=address)
    job = python_job("print('the command ran')", gpus=0, max_retries=1)
    job.datasets.append(pb.DatasetInput(dataset="digits@v1"))
    submitted = cluster.client.submit("lab", job)
    done = cluster.wait_for(submitted.name, ENDED, timeout=120)
    lines = log_text(cluster, submitted.name)
    assert done.state == pb.JOB_STATE_FAILED, "\n".join(lines)
    assert "the command ran" not in lines
    assert done.reason.startswith(
        f"Slurm job {done.external_id} failed before the job started: could not fetch "
        "projects/lab/datasets/digits/versions/v1: "
    ), done.reason
    assert done.reason.endswith("(after 1 retries)")
    assert [a.outcome for a in done.attempts] == [pb.JOB_STATE_FAILED, pb.JOB_STATE_FAILED]
