"""What each node of a placed job runs: the torchrun command line and the environment.

Every node runs the same `torchrun --nnodes N --nproc-per-node G --rdzv-backend c10d
--rdzv-endpoint <rank 0>:<port> --rdzv-id <job>-<attempt>` (torch/distributed/run.py); rank 0 hosts
the rendezvous store (`is_host=true`), so several nodes on one machine do not race for the port.
Retries are the scheduler's (`--max-restarts 0`): a new attempt gets a fresh rendezvous id.
"""

from __future__ import annotations

from google.protobuf import duration_pb2

from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.spec import Shape, torchrun_arguments


def rendezvous_id(job_name: str, attempt: int) -> str:
    _, project, _, job = job_name.split("/")
    return f"{project}-{job}-{attempt}"


def task_argv(job: pb.Job, shape: Shape, endpoint: str, rdzv_id: str, rank: int) -> list[str]:
    """The command of one node: torchrun around the job's script, or the command as given."""
    if job.launcher == pb.LAUNCHER_COMMAND:
        return list(job.command)
    return [
        "torchrun",
        f"--nnodes={shape.nodes}",
        f"--nproc-per-node={max(shape.gpus_per_node, 1)}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={rdzv_id}",
        f"--rdzv-conf=is_host={'true' if rank == 0 else 'false'}",
        "--max-restarts=0",
        *torchrun_arguments(list(job.command)),
    ]


def task_env(job_name: str, job: pb.Job, shape: Shape, endpoint: str, attempt: int, rank: int) -> dict[str, str]:
    """The environment the scheduler adds to the job's own (`CUDA_VISIBLE_DEVICES` is the agent's)."""
    host, _, port = endpoint.rpartition(":")
    env = dict(job.env)
    env.update(
        {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "ATELIER_JOB": job_name,
            "ATELIER_JOB_ATTEMPT": str(attempt),
            "ATELIER_RESTART_COUNT": str(attempt),
            "ATELIER_NODE_RANK": str(rank),
            "ATELIER_NNODES": str(shape.nodes),
        }
    )
    if job.launcher == pb.LAUNCHER_COMMAND:
        env.update({"RANK": str(rank), "WORLD_SIZE": str(shape.nodes), "MASTER_ADDR": host, "MASTER_PORT": port})
    return env


def build_tasks(
    job_name: str,
    job: pb.Job,
    shape: Shape,
    placement: pb.Placement,
    attempt: int,
    grace_seconds: float,
    trace_parent: str = "",
) -> list[agent.Task]:
    """One task per node of the placement, by rank; `trace_parent` (the submission's trace) reaches
    the processes as TRACEPARENT."""
    rdzv_id = rendezvous_id(job_name, attempt)
    grace = duration_pb2.Duration()
    grace.FromNanoseconds(int(grace_seconds * 1e9))
    tasks = []
    for assignment in placement.nodes:
        task = agent.Task(
            job=job_name,
            attempt=attempt,
            rank=assignment.rank,
            argv=task_argv(job, shape, placement.rendezvous_endpoint, rdzv_id, assignment.rank),
            env=task_env(job_name, job, shape, placement.rendezvous_endpoint, attempt, assignment.rank),
            cards=list(assignment.cards),
            datasets=list(job.datasets),
            grace_period=grace,
            working_directory=job.working_directory,
            user=job.user,
        )
        task.max_run_time.CopyFrom(job.max_run_time)
        if trace_parent:
            task.env["TRACEPARENT"] = trace_parent
        tasks.append(task)
    return tasks
