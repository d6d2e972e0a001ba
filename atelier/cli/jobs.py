"""`atelier jobs ...`, `atelier cluster` and `atelier agent`: jobs on the lab's GPUs."""

from __future__ import annotations

import os
import re
import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from atelier.cli.limits import INT32_MAX, byte_count, seconds
from atelier.cli.output import console, emit, human_bytes
from atelier.client.scheduler import SchedulerClient
from atelier.errors import InvalidArgument
from atelier.names import default_project, parse_dataset_ref
from atelier.scheduler.v1 import resources_pb2 as pb
from atelier.stack.addresses import service_address

jobs = typer.Typer(help="Jobs: submit, list, show, follow logs, cancel.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
JobArgument = Annotated[str, typer.Argument(help="Job id or name.")]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="Project (default: $ATELIER_PROJECT or 'default').")
]
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(GiB|GB|MiB|MB|TiB|TB)?", re.IGNORECASE)
_UNITS = {"": 1024**3, "gib": 1024**3, "gb": 10**9, "mib": 1024**2, "mb": 10**6, "tib": 1024**4, "tb": 10**12}
PRECISIONS = ("fp32", "fp16", "tf32", "bf16", "fp8")
EXECUTORS = ("agents", "slurm")


def _client() -> SchedulerClient:
    return SchedulerClient.at(service_address("scheduler"))


def _project(project: str | None) -> str:
    return project or default_project()


def _job_name(text: str, project: str) -> str:
    return text if text.startswith("projects/") else f"projects/{project}/jobs/{text}"


def parse_size(text: str, option: str = "memory size") -> int:
    """`40GiB`, `40` (GiB), `16 GB`, `512MiB` -> bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise InvalidArgument(f"cannot read {option} {text!r}; write e.g. 40GiB, 16GB or 512MiB")
    return byte_count(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()], option)


def _precision(text: str) -> pb.Precision.ValueType:
    if text.lower() not in PRECISIONS:
        raise InvalidArgument(f"unknown precision {text!r}; allowed: {', '.join(PRECISIONS)}")
    return pb.Precision.Value(f"PRECISION_{text.upper()}")


def _executor(text: str) -> pb.ExecutorKind.ValueType:
    if not text:
        return pb.EXECUTOR_KIND_UNSPECIFIED
    if text.lower() not in EXECUTORS:
        raise InvalidArgument(f"unknown executor {text!r}; allowed: {', '.join(EXECUTORS)}")
    return pb.ExecutorKind.Value(f"EXECUTOR_KIND_{text.upper()}")


def _state(job: pb.Job) -> str:
    return pb.JobState.Name(job.state).removeprefix("JOB_STATE_")


def _where(job: pb.Job) -> str:
    return ", ".join(f"{n.node.removeprefix('nodes/')}[{','.join(map(str, n.cards))}]" for n in job.placement.nodes)


@jobs.command(
    "submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, no_args_is_help=True
)
def submit(
    context: typer.Context,
    nodes: Annotated[int, typer.Option("--nodes", "-N", min=1, max=INT32_MAX, help="Nodes of the gang.")] = 1,
    gpus_per_node: Annotated[
        int, typer.Option("--gpus-per-node", "-g", min=0, max=INT32_MAX, help="GPUs on each node.")
    ] = 0,
    gpus: Annotated[
        int, typer.Option("--gpus", min=0, max=INT32_MAX, help="Total GPUs (instead of --gpus-per-node).")
    ] = 0,
    min_gpu_memory: Annotated[str, typer.Option("--min-gpu-memory", help="Memory per card, e.g. 40GiB.")] = "",
    precision: Annotated[str, typer.Option("--precision", help=f"One of {', '.join(PRECISIONS)}.")] = "",
    card_model: Annotated[list[str] | None, typer.Option("--card-model", help="Accept only this model.")] = None,
    cpus_per_node: Annotated[int, typer.Option("--cpus-per-node", min=0, max=INT32_MAX, help="CPUs on each node.")] = 0,
    memory_per_node: Annotated[
        str, typer.Option("--memory-per-node", help="Host memory on each node, e.g. 64GiB.")
    ] = "",
    dataset: Annotated[list[str] | None, typer.Option("--dataset", "-d", help="DATASET@REF to fetch first.")] = None,
    priority: Annotated[str, typer.Option("--priority", help="Priority class: low, normal, high.")] = "",
    retries: Annotated[int, typer.Option("--retries", min=0, max=INT32_MAX, help="Retries of a failed attempt.")] = 0,
    max_run_time: Annotated[float, typer.Option("--max-run-time", min=0, help="Seconds an attempt may run.")] = 0,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=VALUE for the processes.")] = None,
    name: Annotated[str, typer.Option("--name", help="Job id (default: generated).")] = "",
    workdir: Annotated[
        str | None,
        typer.Option(
            "--workdir",
            help="Where the processes start on each node: an absolute path, or one relative to the job's own "
            "directory there ('.' for that directory). Default: this directory.",
        ),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help=f"Who runs it: {', '.join(EXECUTORS)} (default: the scheduler's).")
    ] = "",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Follow the logs until the job ends; exit 1 unless it succeeded.")
    ] = False,
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Submit a job: `atelier jobs submit --nodes 2 --gpus-per-node 4 --min-gpu-memory 40GiB
    --precision bf16 --dataset digits@v2 -- python train.py --lr 0.01`."""
    chosen = _project(project)
    job = pb.Job(
        command=list(context.args),
        resources=pb.Resources(
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            gpus=gpus,
            min_gpu_memory_bytes=parse_size(min_gpu_memory, "--min-gpu-memory") if min_gpu_memory else 0,
            precision=_precision(precision) if precision else pb.PRECISION_UNSPECIFIED,
            allowed_card_models=card_model or [],
            cpus_per_node=cpus_per_node,
            memory_bytes_per_node=parse_size(memory_per_node, "--memory-per-node") if memory_per_node else 0,
        ),
        priority_class=priority,
        executor=_executor(executor),
        max_retries=retries,
        user=os.environ.get("USER", ""),
        working_directory=os.getcwd() if workdir is None else workdir,
        datasets=[pb.DatasetInput(dataset=parse_dataset_ref(d, chosen).version_name) for d in dataset or []],
    )
    for pair in env or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidArgument(f"--env takes NAME=VALUE, got {pair!r}")
        job.env[key] = value
    if seconds(max_run_time, "--max-run-time"):
        job.max_run_time.FromNanoseconds(int(max_run_time * 1e9))
    client = _client()
    submitted = client.submit(chosen, job, name)
    emit(as_json and not follow, submitted, lambda: console.print(f"submitted {submitted.name} ({_state(submitted)})"))
    if follow:
        _follow(client, submitted.name)


@jobs.command("ls")
def list_jobs(project: ProjectOption = None, all_projects: bool = False, as_json: Json = False) -> None:
    """List jobs, newest first."""
    found = list(_client().list_jobs("-" if all_projects else _project(project)))

    def render() -> None:
        table = Table("job", "state", "gpus", "where", "reason", box=None)
        for job in found:
            _, project_id, _, job_id = job.name.split("/", 3)
            shown = f"{project_id}/{job_id}" if all_projects else job_id
            table.add_row(shown, _state(job), _gpus(job), _where(job), job.reason)
        console.print(table)

    emit(as_json, found, render)


def _gpus(job: pb.Job) -> str:
    r = job.resources
    per_node = r.gpus_per_node or (r.gpus // max(r.nodes, 1))
    return f"{max(r.nodes, 1)}x{per_node}"


@jobs.command("show")
def show_job(
    job: Annotated[str, typer.Argument(help="Job id or name.")], project: ProjectOption = None, as_json: Json = False
) -> None:
    """A job's request, state, placement and attempts."""
    found = _client().get_job(_job_name(job, _project(project)))

    def render() -> None:
        console.print(Text.assemble((found.name, "bold"), f"  {_state(found)}  {found.reason}"))
        console.print(f"command: {' '.join(found.command)}")
        console.print(f"asks: {_gpus(found)} GPUs, priority {found.priority_class}, retries {found.max_retries}")
        if found.external_id:
            engine = pb.ExecutorKind.Name(found.executor).removeprefix("EXECUTOR_KIND_").capitalize()
            console.print(f"{engine} job: {found.external_id}")
        if found.placement.nodes:
            console.print(f"placed: {_where(found)} (rendezvous {found.placement.rendezvous_endpoint})")
            console.print(f"why: {found.placement.explanation}")
        for attempt in found.attempts:
            outcome = pb.JobState.Name(attempt.outcome).removeprefix("JOB_STATE_") if attempt.outcome else "RUNNING"
            console.print(f"  attempt {attempt.number}: {outcome} {attempt.reason}")

    emit(as_json, found, render)


@jobs.command("logs")
def logs(
    job: Annotated[str, typer.Argument(help="Job id or name.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends; exit 1 unless it succeeded.")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Print a job's log lines (every rank, prefixed with its rank)."""
    client = _client()
    name = _job_name(job, _project(project))
    if follow:
        _follow(client, name)
        return
    for page in client.logs(name):
        for line in page.lines:
            _print_line(line)


def _follow(client: SchedulerClient, name: str) -> None:
    """Print the job's lines until it ends, then its state; a job that did not succeed fails the
    command (exit status 1), as `srun` or `kubectl wait` would, so scripts can chain on it."""
    state = pb.JOB_STATE_UNSPECIFIED
    for page in client.logs(name, follow=True):
        for line in page.lines:
            _print_line(line)
        state = page.state
    console.print(f"{name}: {pb.JobState.Name(state).removeprefix('JOB_STATE_')}")
    if state != pb.JOB_STATE_SUCCEEDED:
        raise typer.Exit(1)


def _print_line(line: pb.LogLine) -> None:
    stream = sys.stderr if line.stream == pb.LOG_STREAM_STDERR else sys.stdout
    print(f"[{line.rank}] {line.text}", file=stream, flush=True)


@jobs.command("cancel")
def cancel(
    job: Annotated[str, typer.Argument(help="Job id or name.")], project: ProjectOption = None, as_json: Json = False
) -> None:
    """Cancel a job (running processes get SIGTERM, then SIGKILL after the grace period)."""
    found = _client().cancel(_job_name(job, _project(project)))
    emit(as_json, found, lambda: console.print(f"{found.name}: {_state(found)}"))


def cluster(as_json: Json = False) -> None:
    """Nodes and their cards: host CPUs and memory (free of running jobs' requests / total), each card's model,
    memory, precisions, and which job holds it."""
    found = list(_client().list_nodes())

    def render() -> None:
        columns = ("node", "state", "host free/total", "card", "model", "memory free/total", "precisions", "job")
        table = Table(*columns, box=None)
        for node in found:
            state = pb.NodeState.Name(node.state).removeprefix("NODE_STATE_")
            memory = f"{human_bytes(node.free_memory_bytes)}/{human_bytes(node.memory_bytes)}"
            host = f"{node.free_cpus}/{node.cpus} CPUs, {memory}"
            for position, card in enumerate(node.cards or [pb.Card()]):
                precisions = ",".join(pb.Precision.Name(p).removeprefix("PRECISION_").lower() for p in card.precisions)
                table.add_row(
                    node.name.removeprefix("nodes/"),
                    state,
                    "" if position else host,
                    str(card.index),
                    card.model,
                    f"{human_bytes(card.memory_free_bytes)}/{human_bytes(card.memory_total_bytes)}",
                    precisions,
                    card.job.split("/", 2)[-1] if card.job else "",
                )
        console.print(table)

    emit(as_json, found, render)


def agent(
    scheduler: Annotated[str, typer.Option("--scheduler", help="Scheduler host:port (default: local stack).")] = "",
    node_id: Annotated[str, typer.Option("--name", help="Node id (default: host name).")] = "",
    inventory: Annotated[str, typer.Option("--inventory", help="JSON file declaring the cards (no NVML).")] = "",
    address: Annotated[str, typer.Option("--address", help="Host other nodes reach this one at.")] = "",
) -> None:
    """Run a node agent in the foreground (Ctrl-C stops it and its tasks)."""
    settings: dict[str, Any] = {
        "ATELIER_AGENT_SCHEDULER_ADDRESS": scheduler,
        "ATELIER_AGENT_NODE_ID": node_id,
        "ATELIER_AGENT_INVENTORY": inventory,
        "ATELIER_AGENT_ADDRESS": address,
    }
    env = dict(os.environ)
    env.update({k: v for k, v in settings.items() if v})
    os.execve(sys.executable, [sys.executable, "-m", "services.scheduler.agent"], env)
