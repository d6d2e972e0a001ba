"""Jobs handed to a real Slurm through the real scheduler: the GPU type chosen, states, cancel, logs."""

from __future__ import annotations

import json
import sys

import pytest

from atelier.errors import FailedPrecondition
from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.scheduler.conftest import Cluster
from tests.integration.scheduler.slurm.conftest import SlurmScheduler
from tests.integration.scheduler.slurm.slurm_cluster import Slurm

GIB = 1024**3
ENDED = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), pytest.mark.timeout(240)]

SHOW_ENV = (
    "import json, os; print('ENV ' + json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith(('SLURM_', 'CUDA_', 'ATELIER_'))}))"
)


def python_job(code: str, gpus: int = 1, memory_gib: int = 0, precision: int = 0, **fields: object) -> pb.Job:
    resources = pb.Resources(gpus_per_node=gpus, min_gpu_memory_bytes=memory_gib * GIB, precision=precision)  # type: ignore[arg-type]
    return pb.Job(command=["python", "-c", code], resources=resources, launcher=pb.LAUNCHER_COMMAND, **fields)  # type: ignore[arg-type]


def log_text(cluster: Cluster, name: str) -> list[str]:
    return [line.text for page in cluster.client.logs(name, follow=True) for line in page.lines]


def printed_env(lines: list[str]) -> dict[str, str]:
    found = next(line for line in lines if line.startswith("ENV "))
    return dict(json.loads(found.removeprefix("ENV ")))


def slurm_job(slurm: Slurm, external_id: str) -> str:
    return slurm.run("scontrol", "show", "job", external_id).stdout


def test_a_40gib_bf16_job_runs_on_the_a100_type(scheduler: Cluster, slurm: Slurm) -> None:
    job = scheduler.client.submit("lab", python_job(SHOW_ENV, 1, 40, pb.PRECISION_BF16), "big")
    done = scheduler.wait_for(job.name, ENDED, timeout=120)
    lines = log_text(scheduler, job.name)
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(lines)
    assert done.external_id.isdigit()
    assert "TresPerNode=gres:gpu:a100:1" in slurm_job(slurm, done.external_id)
    assert f"submitted to Slurm as job {done.external_id}: --gres=gpu:a100:1" in lines
    env = printed_env(lines)
    assert env["CUDA_VISIBLE_DEVICES"] in ("0", "1")  # one of the a100 devices (global numbers: no cgroups)
    assert env["SLURM_JOB_ID"] == done.external_id
    assert env["SLURM_JOB_NUM_NODES"] == "1"
    assert env["ATELIER_JOB"] == "projects/lab/jobs/big"
    assert env["ATELIER_NODE_RANK"] == "0"
    assert [a.outcome for a in done.attempts] == [pb.JOB_STATE_SUCCEEDED]
    assert [n.node for n in done.placement.nodes] == [f"nodes/{slurm.node}"]
    assert f"job {done.external_id}" in done.placement.explanation


def test_a_v100_only_request_goes_to_the_v100_type(scheduler: Cluster, slurm: Slurm) -> None:
    job = python_job(SHOW_ENV, 2)
    job.resources.allowed_card_models.append("V100M32")
    done = scheduler.wait_for(scheduler.client.submit("lab", job, "old").name, ENDED, timeout=120)
    lines = log_text(scheduler, done.name)
    assert done.state == pb.JOB_STATE_SUCCEEDED, "\n".join(lines)
    assert "TresPerNode=gres:gpu:v100:2" in slurm_job(slurm, done.external_id)
    assert printed_env(lines)["CUDA_VISIBLE_DEVICES"] == "2,3"  # the v100 devices (no cgroup renumbering)


def test_an_impossible_request_is_refused_at_submission_with_the_configured_types(scheduler: Cluster) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        scheduler.client.submit("lab", python_job("print(1)", 1, 100, pb.PRECISION_BF16))
    message = refused.value.message
    assert "no Slurm GPU type gives 1 GPUs with >= 100 GiB and bf16" in message
    assert "a100 = A100-80 (80 GiB; fp32, fp16, tf32, bf16)" in message
    assert "v100 = V100M32 (32 GiB; fp32, fp16)" in message
    with pytest.raises(FailedPrecondition, match="fp8"):
        scheduler.client.submit("lab", python_job("print(1)", 1, 0, pb.PRECISION_FP8))
    assert list(scheduler.client.list_jobs("lab")) == []


def test_a_failing_command_fails_with_its_exit_code_after_its_retries(scheduler: Cluster) -> None:
    job = scheduler.client.submit("lab", python_job("import sys; print('trying'); sys.exit(3)", max_retries=1))
    done = scheduler.wait_for(job.name, ENDED, timeout=120)
    assert done.state == pb.JOB_STATE_FAILED
    assert "exit code 3" in done.reason
    assert "(after 1 retries)" in done.reason
    assert [a.outcome for a in done.attempts] == [pb.JOB_STATE_FAILED, pb.JOB_STATE_FAILED]
    assert done.restart_count == 1
    assert log_text(scheduler, job.name).count("trying") == 2


def test_the_executor_can_be_chosen_per_job(schedulers: SlurmScheduler) -> None:
    cluster = schedulers.start(default_executor="agents")
    with pytest.raises(FailedPrecondition, match="the cluster has no nodes to hold 1 GPU"):
        cluster.client.submit("lab", python_job("print(1)"))  # agents: no node registered
    job = python_job("print('on slurm')", executor=pb.EXECUTOR_KIND_SLURM)
    done = cluster.wait_for(cluster.client.submit("lab", job).name, ENDED, timeout=120)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    assert "on slurm" in log_text(cluster, done.name)


def test_a_command_without_gpus_runs_with_no_gres(scheduler: Cluster, slurm: Slurm) -> None:
    job = scheduler.client.submit("lab", python_job(f"print({sys.version_info.major})", gpus=0))
    done = scheduler.wait_for(job.name, ENDED, timeout=120)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    assert "TresPerNode" not in slurm_job(slurm, done.external_id)


def test_a_job_slurm_refuses_fails_with_slurms_reason(schedulers: SlurmScheduler) -> None:
    cluster = schedulers.start(slurm_partition="nosuchpartition")
    job = cluster.client.submit("lab", python_job("print(1)", max_retries=2))
    done = cluster.wait_for(job.name, ENDED, timeout=60)
    assert done.state == pb.JOB_STATE_FAILED
    assert done.reason == (
        "Slurm refused the job: sbatch failed: sbatch: error: Batch job submission failed: "
        "Invalid partition name specified"
    )
    assert done.external_id == ""
    assert list(done.attempts) == []  # it never started: no retry either
