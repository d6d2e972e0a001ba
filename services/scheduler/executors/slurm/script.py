"""The sbatch command line and the batch script of one attempt.

The allocation is `--nodes N --ntasks-per-node=1` with the GPUs as `--gres`: one task per node, and in
it one `torchrun --nnodes=$SLURM_JOB_NUM_NODES --nproc-per-node=G --rdzv-id=$SLURM_JOB_ID
--rdzv-backend=c10d --rdzv-endpoint=<first host>:<port>` started by `srun`, as PyTorch's Slurm recipe
has it; the command launcher runs the command once per node with RANK/WORLD_SIZE/MASTER_ADDR of the
node instead. Slurm sets CUDA_VISIBLE_DEVICES from the gres it gave each node.

Before that, the script pulls the job's dataset versions with the project's own CLI (`atelier data pull`,
with the job's token from sbatch's environment) into `$ATELIER_DATA_DIR/<path>` under the job's folder,
which the nodes share. A pull that fails ends the script with its reason written next to the output
(`slurm-<id>.failed`), so the job fails saying why instead of with a bare exit code.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.executors.base import Submission
from services.scheduler.launch import task_env
from services.scheduler.spec import torchrun_arguments

MIB = 1024**2
_PER_NODE_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "ATELIER_NODE_RANK")
"""Variables that differ per node or come from the allocation: the script sets them."""


@dataclass(frozen=True)
class ScriptSettings:
    """What the batch script needs beyond the job: the Python on the nodes and the rendezvous ports."""

    python: str = ""
    port_base: int = 29400
    port_count: int = 500


@dataclass(frozen=True)
class DataPull:
    """The job's folder (datasets go to its `data`, a failed pull's reason to `slurm-<id>.failed` in it)
    and the data service the script pulls from."""

    folder: Path
    address: str


def failure_file(external_id: str) -> str:
    """The file in the job's folder that says why the script ended before the job's command."""
    return f"slurm-{external_id}.failed"


def job_label(submission: Submission) -> str:
    """Slurm's job name: `atelier-<project>-<job>-<attempt>`."""
    _, project, _, job = submission.job_name.split("/")
    return f"atelier-{project}-{job}-{submission.attempt}"


def start_directory(folder: Path, job: pb.Job) -> Path:
    """Where the job's processes start: its working_directory, inside the job's folder when relative
    (the folder itself when empty)."""
    return folder / job.working_directory


def sbatch_arguments(submission: Submission, gres: str, partition: str, output: Path, chdir: Path) -> list[str]:
    """Options of `sbatch --parsable` for one attempt (the script path follows them)."""
    job = submission.job
    arguments = [
        "--parsable",
        f"--job-name={job_label(submission)}",
        f"--nodes={submission.shape.nodes}",
        "--ntasks-per-node=1",
        f"--output={output}",
        f"--chdir={chdir}",
    ]
    if gres:
        arguments.append(f"--gres={gres}")
    if job.HasField("max_run_time") and job.max_run_time.ToNanoseconds() > 0:
        # Slurm counts time limits in whole minutes.
        arguments.append(f"--time={max(1, math.ceil(job.max_run_time.ToNanoseconds() / 60e9))}")
    if job.resources.cpus_per_node:
        arguments.append(f"--cpus-per-task={job.resources.cpus_per_node}")
    if job.resources.memory_bytes_per_node:
        arguments.append(f"--mem={math.ceil(job.resources.memory_bytes_per_node / MIB)}M")
    if partition:
        arguments.append(f"--partition={partition}")
    return arguments


def batch_script(
    submission: Submission, settings: ScriptSettings, arguments: list[str], data: DataPull | None = None
) -> str:
    """The script sbatch runs on the first node of the allocation; with `data`, it pulls the job's
    datasets first."""
    job = submission.job
    env = task_env(submission.job_name, job, submission.shape, "", submission.attempt, 0)
    lines = [
        "#!/bin/bash",
        f"# Atelier job {submission.job_name}, attempt {submission.attempt}.",
        f"# sbatch {shlex.join(arguments)}",
        *(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items()) if name not in _PER_NODE_ENV),
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"port=$(( {settings.port_base} + SLURM_JOB_ID % {settings.port_count} ))",
    ]
    if data is not None:
        lines.extend(pull_lines(job, settings.python, data))
    per_node = 'export ATELIER_NODE_RANK="$SLURM_NODEID"'
    if job.launcher == pb.LAUNCHER_COMMAND:
        lines.append('export MASTER_ADDR="$head" MASTER_PORT="$port" WORLD_SIZE="$SLURM_JOB_NUM_NODES"')
        per_node += ' RANK="$SLURM_NODEID"'
    wrapper = shlex.quote(per_node + '; exec "$@"')
    task = " ".join(task_words(job, submission.shape.gpus_per_node, settings.python))
    lines.append(f"srun --kill-on-bad-exit=1 bash -c {wrapper} atelier-task {task}")
    return "\n".join(lines) + "\n"


def pull_lines(job: pb.Job, python: str, data: DataPull) -> list[str]:
    """Lines that set ATELIER_DATA_DIR and pull each dataset version into it; the first pull that fails
    prints the CLI's output, writes its last line to the failure file and ends the script with 1."""
    folder = shlex.quote(str(data.folder))
    lines = [f"export ATELIER_DATA_DIR={folder}/data", 'mkdir -p "$ATELIER_DATA_DIR"']
    if not job.datasets:
        return lines
    cli = f"{shlex.quote(python)} -m atelier.cli.main" if python else "atelier"
    failure = f"{folder}/{failure_file('$SLURM_JOB_ID')}"
    lines += [
        "atelier_pull() {",
        '  echo "atelier: fetching $1 into $2"',
        f'  if ! pulled=$(ATELIER_DATA_ADDRESS={shlex.quote(data.address)} {cli} data pull --json "$1" "$2" 2>&1)',
        "  then",
        "    printf '%s\\n' \"$pulled\"",
        '    printf \'could not fetch %s: %s\\n\' "$1" "$(printf \'%s\\n\' "$pulled" | grep . | tail -n 1)" \\',
        f"      > {failure}",
        "    exit 1",
        "  fi",
        '  echo "atelier: fetched $1"',
        "}",
    ]
    for dataset in job.datasets:
        lines.append(f'atelier_pull {shlex.quote(dataset.version)} "$ATELIER_DATA_DIR"/{shlex.quote(dataset.path)}')
    return lines


def task_words(job: pb.Job, gpus_per_node: int, python: str) -> list[str]:
    """The command of each node as shell words: the job's own arguments quoted, torchrun's options
    reading the allocation's variables."""
    command = list(job.command)
    if job.launcher == pb.LAUNCHER_COMMAND:
        return [shlex.quote(word) for word in with_python(command, python)]
    launcher = [shlex.quote(python), "-m", "torch.distributed.run"] if python else ["torchrun"]
    return [
        *launcher,
        '--nnodes="$SLURM_JOB_NUM_NODES"',
        f"--nproc-per-node={max(gpus_per_node, 1)}",
        '--rdzv-id="$SLURM_JOB_ID"',
        "--rdzv-backend=c10d",
        '--rdzv-endpoint="$head:$port"',
        "--max-restarts=0",
        *(shlex.quote(word) for word in torchrun_arguments(command)),
    ]


def with_python(command: list[str], python: str) -> list[str]:
    """`python ...` runs the configured Python of the nodes, when there is one."""
    if python and command and command[0] in ("python", "python3"):
        return [python, *command[1:]]
    return command
