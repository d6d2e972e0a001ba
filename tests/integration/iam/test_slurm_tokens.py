"""With access control on, a job handed to Slurm gets the same project-scoped token as one run by
Atelier's agents, through sbatch's environment (never written into the batch script)."""

from __future__ import annotations

import time

import pytest

from atelier.client.channel import connect
from atelier.client.scheduler import SchedulerClient
from atelier.iam.v1 import iam_service_pb2 as iam_pb
from atelier.iam.v1 import resources_pb2 as res
from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.iam.conftest import Iam
from tests.integration.scheduler.slurm.conftest import SlurmScheduler, schedulers, slurm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), pytest.mark.timeout(240)]
ENDED = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
WHO = (
    "import os; from atelier.client.iam import IamClient; "
    "i = IamClient.at(os.environ['IAM']).authenticate(os.environ['ATELIER_TOKEN']); "
    "print('WHO', i.principal, i.scope_project)"
)


def test_a_slurm_job_runs_with_its_submitters_project_scoped_token(
    schedulers: SlurmScheduler,  # noqa: F811 - the imported fixture
    iam: Iam,
) -> None:
    iam.call(
        "CreateServiceAccount",
        iam_pb.CreateServiceAccountRequest(
            service_account_id="scheduler", service_account=res.Principal(cluster_roles=[res.CLUSTER_ROLE_SERVICE])
        ),
    )
    cluster = schedulers.start(
        auth="on", iam_address=iam.address, auth_cache_seconds=0, token=iam.token("serviceAccounts/scheduler")
    )
    alice = SchedulerClient(connect(cluster.address, token=iam.user("alice", {"lab": res.ROLE_MEMBER})))
    job = pb.Job(
        command=["python", "-c", WHO],
        resources=pb.Resources(gpus_per_node=0),
        launcher=pb.LAUNCHER_COMMAND,
        env={"IAM": iam.address},
    )
    submitted = alice.submit("lab", job)
    done = submitted
    for _ in range(600):
        done = alice.get_job(submitted.name)
        if done.state in ENDED:
            break
        time.sleep(0.2)
    lines = [line.text for page in alice.logs(submitted.name, follow=True) for line in page.lines]
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(lines)
    assert "WHO users/alice projects/lab" in lines
    scripts = list(schedulers.work_dir.rglob("*.sbatch"))
    assert scripts
    assert all("atl_" not in script.read_text() for script in scripts), "a token secret was written to a script"
