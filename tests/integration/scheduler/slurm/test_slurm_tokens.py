"""With access control on, a job handed to Slurm gets the same project-scoped token as one run by
Atelier's agents, through sbatch's environment (never written into the batch script), and its batch
script pulls the job's datasets from a secured data service with it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atelier.client import DataClient
from atelier.client.channel import connect
from atelier.client.scheduler import SchedulerClient
from atelier.datasets.push import push
from atelier.iam.v1 import iam_service_pb2 as iam_pb
from atelier.iam.v1 import resources_pb2 as res
from atelier.names import parse_dataset_ref
from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.iam.conftest import Iam, iam  # noqa: F401 - the fixture
from tests.integration.scheduler.slurm.conftest import SlurmScheduler

pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), pytest.mark.timeout(240)]
ENDED = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
WHO = (
    "import os; from atelier.client.iam import IamClient; "
    "i = IamClient.at(os.environ['IAM']).authenticate(os.environ['ATELIER_TOKEN']); "
    "print('WHO', i.principal, i.scope_project)"
)


def service_token(server: Iam, account: str) -> str:
    server.call(
        "CreateServiceAccount",
        iam_pb.CreateServiceAccountRequest(
            service_account_id=account, service_account=res.Principal(cluster_roles=[res.CLUSTER_ROLE_SERVICE])
        ),
    )
    return server.token(f"serviceAccounts/{account}")


def wait_ended(client: SchedulerClient, name: str) -> tuple[pb.Job, list[str]]:
    done = client.get_job(name)
    for _ in range(600):
        done = client.get_job(name)
        if done.state in ENDED:
            break
        time.sleep(0.2)
    return done, [line.text for page in client.logs(name, follow=True) for line in page.lines]


def test_a_slurm_job_runs_with_its_submitters_project_scoped_token(
    schedulers: SlurmScheduler,
    iam: Iam,  # noqa: F811 - the imported fixture
) -> None:
    token = service_token(iam, "scheduler")
    cluster = schedulers.start(auth="on", iam_address=iam.address, auth_cache_seconds=0, token=token)
    alice = SchedulerClient(connect(cluster.address, token=iam.user("alice", {"lab": res.ROLE_MEMBER})))
    job = pb.Job(
        command=["python", "-c", WHO],
        resources=pb.Resources(gpus_per_node=0),
        launcher=pb.LAUNCHER_COMMAND,
        env={"IAM": iam.address},
    )
    submitted = alice.submit("lab", job)
    done, lines = wait_ended(alice, submitted.name)
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(lines)
    assert "WHO users/alice projects/lab" in lines
    scripts = list(schedulers.work_dir.rglob("*.sbatch"))
    assert scripts
    assert all("atl_" not in script.read_text() for script in scripts), "a token secret was written to a script"


def test_a_slurm_job_pulls_its_dataset_from_a_secured_data_service_with_its_token(
    schedulers: SlurmScheduler,
    iam: Iam,  # noqa: F811 - the imported fixture
    serve: Callable[[Callable[[], Any]], str],
    tmp_path: Path,
) -> None:
    from services.data.server import build
    from services.data.settings import DataSettings

    secured = {"auth": "on", "iam_address": iam.address, "auth_cache_seconds": 0}
    data = serve(lambda: build(DataSettings(home=tmp_path / "data", token=service_token(iam, "data"), **secured)))
    bob = iam.user("bob", {"lab": res.ROLE_MEMBER})
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "labels.txt").write_text("0 1\n")
    admin, client = DataClient(connect(data, token=iam.admin_token)), DataClient(connect(data, token=bob))
    try:
        admin.create_project("lab")
        push(client, tmp_path / "digits", parse_dataset_ref("digits", "lab"))
    finally:
        admin.close()
        client.close()
    cluster = schedulers.start(data_address=data, token=service_token(iam, "scheduler"), **secured)
    bob_jobs = SchedulerClient(connect(cluster.address, token=bob))
    read = "import os; print('READ', open(os.environ['ATELIER_DATA_DIR'] + '/digits/labels.txt').read().strip())"
    job = pb.Job(
        command=["python", "-c", read],
        resources=pb.Resources(gpus_per_node=0),
        launcher=pb.LAUNCHER_COMMAND,
        datasets=[pb.DatasetInput(dataset="digits@v1")],
    )
    done, lines = wait_ended(bob_jobs, bob_jobs.submit("lab", job).name)
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(lines)
    assert "READ 0 1" in lines
