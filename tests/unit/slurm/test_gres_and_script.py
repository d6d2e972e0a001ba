"""A job's request in Slurm's terms: the GPU type chosen, the sbatch options and the batch script."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from atelier.errors import FailedPrecondition, InvalidArgument
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.executors.base import Submission
from services.scheduler.executors.slurm.executor import slurm_executor
from services.scheduler.executors.slurm.gres import choose_gres, gpu_types
from services.scheduler.executors.slurm.script import (
    DataPull,
    ScriptSettings,
    batch_script,
    sbatch_arguments,
    start_directory,
)
from services.scheduler.spec import Shape

GIB = 1024**3
TYPES = gpu_types({"a100": "A100-80", "v100": "V100M32", "h100": "H100", "t4": "T4"})


def resources(
    memory_gib: int = 0, precision: int = 0, allowed: tuple[str, ...] = (), forbidden: tuple[str, ...] = ()
) -> pb.Resources:
    return pb.Resources(
        min_gpu_memory_bytes=memory_gib * GIB,
        precision=precision,  # type: ignore[arg-type]
        allowed_card_models=list(allowed),
        forbidden_card_models=list(forbidden),
    )


@pytest.mark.parametrize(
    ("request_", "gres"),
    [
        (resources(40, pb.PRECISION_BF16), "gpu:a100:4"),  # a100 and h100 fit; the a100 is less capable
        (resources(0, pb.PRECISION_FP8), "gpu:h100:4"),
        (resources(32, pb.PRECISION_FP16), "gpu:v100:4"),  # v100 (7.0) before a100 and h100
        (resources(allowed=("V100M32",)), "gpu:v100:4"),
        (resources(24, forbidden=("A100-80",)), "gpu:v100:4"),
        (resources(), "gpu:4"),  # every type will do: Slurm may pick any
    ],
)
def test_the_least_capable_satisfying_type_is_asked_for(request_: pb.Resources, gres: str) -> None:
    assert choose_gres(TYPES, request_, Shape(2, 4)).gres == gres


def test_every_satisfying_type_is_named() -> None:
    assert choose_gres(TYPES, resources(40, pb.PRECISION_BF16), Shape(1, 1)).satisfying == ("a100", "h100")


def test_a_job_without_gpus_asks_for_no_gres() -> None:
    assert choose_gres(TYPES, resources(100), Shape(1, 0)).gres == ""


def test_no_satisfying_type_names_the_request_and_every_configured_type() -> None:
    with pytest.raises(FailedPrecondition) as refused:
        choose_gres(gpu_types({"a100": "A100-80", "v100": "V100M32"}), resources(100, pb.PRECISION_BF16), Shape(1, 2))
    assert refused.value.message == (
        "no Slurm GPU type gives 2 GPUs with >= 100 GiB and bf16; configured types: "
        "a100 = A100-80 (80 GiB; fp32, fp16, tf32, bf16); v100 = V100M32 (32 GiB; fp32, fp16)"
    )
    with pytest.raises(FailedPrecondition, match="none \\(set ATELIER_SCHEDULER_SLURM_GPU_TYPES\\)"):
        choose_gres([], resources(), Shape(1, 1))


def test_an_unknown_card_model_in_the_mapping_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="ATELIER_SCHEDULER_SLURM_GPU_TYPES: unknown card model 'A100X'"):
        slurm_executor("", "", 5, {"a100": "A100X"}, "", tmp_path, "", ScriptSettings())


def submission(nodes: int, gpus: int, **fields: object) -> Submission:
    job = pb.Job(
        command=["python", "train.py", "--name", "two words", "$HOME"],
        resources=pb.Resources(nodes=nodes, gpus_per_node=gpus),
        **fields,  # type: ignore[arg-type]
    )
    return Submission("projects/lab/jobs/big", 1, job, Shape(nodes, gpus))


def test_sbatch_options_of_a_two_node_job() -> None:
    job = submission(2, 4, env={"LR": "0.1"})
    job.job.max_run_time.FromSeconds(3601)
    job.job.resources.cpus_per_node = 16
    job.job.resources.memory_bytes_per_node = 64 * GIB
    arguments = sbatch_arguments(job, "gpu:a100:4", "gpu", Path("/w/out.log"), Path("/w"))
    assert arguments == [
        "--parsable",
        "--job-name=atelier-lab-big-1",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--output=/w/out.log",
        "--chdir=/w",
        "--gres=gpu:a100:4",
        "--time=61",  # minutes, rounded up
        "--cpus-per-task=16",
        "--mem=65536M",
        "--partition=gpu",
    ]


def test_a_short_time_limit_becomes_one_minute_and_none_gives_no_limit() -> None:
    short = submission(1, 1)
    short.job.max_run_time.FromSeconds(5)
    assert "--time=1" in sbatch_arguments(short, "", "", Path("o"), Path("."))
    assert not any(a.startswith("--time") for a in sbatch_arguments(submission(1, 1), "", "", Path("o"), Path(".")))


def test_the_script_of_a_torchrun_job_rendezvous_on_the_first_host() -> None:
    job = submission(2, 4, env={"LR": "0.1 0.2"})
    script = batch_script(job, ScriptSettings("/opt/py/bin/python", 29400, 500), ["--nodes=2"])
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "# sbatch --nodes=2" in lines
    assert "export LR='0.1 0.2'" in lines
    assert "export ATELIER_JOB=projects/lab/jobs/big" in lines
    assert "export ATELIER_RESTART_COUNT=1" in lines
    assert 'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in lines
    assert "port=$(( 29400 + SLURM_JOB_ID % 500 ))" in lines
    assert lines[-1] == (
        'srun --kill-on-bad-exit=1 bash -c \'export ATELIER_NODE_RANK="$SLURM_NODEID"; exec "$@"\' atelier-task '
        '/opt/py/bin/python -m torch.distributed.run --nnodes="$SLURM_JOB_NUM_NODES" --nproc-per-node=4 '
        '--rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$head:$port" --max-restarts=0 '
        "train.py --name 'two words' '$HOME'"
    )
    assert not any(line.startswith(("export RANK", "export MASTER_ADDR")) for line in lines)


def test_without_a_configured_python_the_script_calls_torchrun() -> None:
    last = batch_script(submission(1, 2), ScriptSettings(), []).splitlines()[-1]
    assert " atelier-task torchrun --nnodes=" in last
    assert "--nproc-per-node=2" in last


def test_the_script_of_a_command_job_gives_each_node_its_rank() -> None:
    job = submission(3, 1, launcher=pb.LAUNCHER_COMMAND)
    lines = batch_script(job, ScriptSettings("/py"), []).splitlines()
    assert 'export MASTER_ADDR="$head" MASTER_PORT="$port" WORLD_SIZE="$SLURM_JOB_NUM_NODES"' in lines
    wrapper = shlex.split(lines[-1])
    assert wrapper[:4] == ["srun", "--kill-on-bad-exit=1", "bash", "-c"]
    assert wrapper[4] == 'export ATELIER_NODE_RANK="$SLURM_NODEID" RANK="$SLURM_NODEID"; exec "$@"'
    assert wrapper[5:] == ["atelier-task", "/py", "train.py", "--name", "two words", "$HOME"]


def test_a_script_pulls_each_dataset_into_the_data_directory_before_srun() -> None:
    job = submission(1, 1)
    job.job.datasets.add(dataset="digits@v2", path="in/digits", version="projects/lab/datasets/digits/versions/v2")
    lines = batch_script(job, ScriptSettings("/py"), [], DataPull(Path("/w/lab/big"), "data:7000")).splitlines()
    assert "export ATELIER_DATA_DIR=/w/lab/big/data" in lines
    assert (
        '  if ! pulled=$(ATELIER_DATA_ADDRESS=data:7000 /py -m atelier.cli.main data pull --json "$1" "$2" 2>&1)'
        in lines
    )
    pull = 'atelier_pull projects/lab/datasets/digits/versions/v2 "$ATELIER_DATA_DIR"/in/digits'
    assert lines.index(pull) == len(lines) - 2  # right before srun
    without = batch_script(submission(1, 1), ScriptSettings("/py"), [], DataPull(Path("/w/lab/big"), ""))
    assert "export ATELIER_DATA_DIR=/w/lab/big/data" in without.splitlines()
    assert "atelier_pull" not in without


@pytest.mark.parametrize(
    ("working_directory", "expected"),
    [("", "/jobs/lab/x"), ("data", "/jobs/lab/x/data"), ("/home/ana/project", "/home/ana/project")],
)
def test_a_job_starts_in_its_folder_or_its_working_directory(working_directory: str, expected: str) -> None:
    assert start_directory(Path("/jobs/lab/x"), pb.Job(working_directory=working_directory)) == Path(expected)
