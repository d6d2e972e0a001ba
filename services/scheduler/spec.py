"""Checking a submitted job: what it may ask for, with errors that name the value and what is allowed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from atelier.errors import InvalidArgument
from atelier.runtime.fields import check_enum
from atelier.scheduler.v1 import resources_pb2 as pb

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_ENV = ("CUDA_VISIBLE_DEVICES", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_PYTHONS = re.compile(r"(.*/)?python(3(\.[0-9]+)?)?")


@dataclass(frozen=True)
class Shape:
    """A job's GPU request resolved to a gang: `nodes` nodes with `gpus_per_node` cards each."""

    nodes: int
    gpus_per_node: int

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


def resolve_shape(resources: pb.Resources) -> Shape:
    """Nodes x GPUs per node from `nodes`, `gpus_per_node` and `gpus`; INVALID_ARGUMENT when they
    contradict each other."""
    for field in ("nodes", "gpus_per_node", "gpus", "cpus_per_node"):
        if getattr(resources, field) < 0:
            raise InvalidArgument(f"resources.{field} must be >= 0, got {getattr(resources, field)}")
    for field in ("min_gpu_memory_bytes", "memory_bytes_per_node"):
        if getattr(resources, field) < 0:
            raise InvalidArgument(f"resources.{field} must be >= 0, got {getattr(resources, field)}")
    nodes = resources.nodes or 1
    if resources.gpus and resources.gpus_per_node:
        if resources.gpus != nodes * resources.gpus_per_node:
            raise InvalidArgument(
                f"resources.gpus ({resources.gpus}) contradicts nodes x gpus_per_node "
                f"({nodes} x {resources.gpus_per_node}); give one of gpus and gpus_per_node"
            )
        return Shape(nodes, resources.gpus_per_node)
    if resources.gpus:
        if resources.gpus % nodes:
            raise InvalidArgument(
                f"resources.gpus ({resources.gpus}) does not split evenly over {nodes} nodes; "
                "torchrun needs the same number of GPUs on every node"
            )
        return Shape(nodes, resources.gpus // nodes)
    return Shape(nodes, resources.gpus_per_node)


def check_command(job: pb.Job) -> None:
    """The command must be there and, under torchrun, be a Python script or module."""
    if not job.command:
        raise InvalidArgument("job.command is empty; give the command to run, e.g. python train.py --lr 0.01")
    if job.launcher in (pb.LAUNCHER_UNSPECIFIED, pb.LAUNCHER_TORCHRUN):
        torchrun_arguments(list(job.command))


def torchrun_arguments(command: list[str]) -> list[str]:
    """What follows torchrun's own options for a command: `python train.py a` -> `train.py a`,
    `python -m pkg.mod a` -> `-m pkg.mod a`, `train.py a` -> `train.py a`."""
    first = command[0]
    rest = command[1:]
    if _PYTHONS.fullmatch(first):
        if not rest or (rest[0] == "-m" and len(rest) < 2):
            raise InvalidArgument(f"command {' '.join(command)!r} names no script or module to run under torchrun")
        if rest[0].startswith("-") and rest[0] != "-m":
            raise InvalidArgument(
                f"python option {rest[0]!r} cannot be passed through torchrun; allowed: python SCRIPT ..., "
                "python -m MODULE ..., or the COMMAND launcher"
            )
        return rest
    if first.endswith(".py"):
        return command
    if first == "torchrun" or first.endswith("/torchrun"):
        raise InvalidArgument(
            "give the training command without torchrun (python train.py ...): the scheduler adds torchrun with "
            "--nnodes, --nproc-per-node and the rendezvous; or use the COMMAND launcher"
        )
    raise InvalidArgument(
        f"torchrun runs Python scripts or modules; {first!r} is neither (allowed: python SCRIPT ..., "
        "python -m MODULE ..., SCRIPT.py ...; other programs need the COMMAND launcher)"
    )


def check_env(env: dict[str, str]) -> None:
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise InvalidArgument(f"environment variable name {name!r} is not valid ([A-Za-z_][A-Za-z0-9_]*)")
        if name in _RESERVED_ENV:
            raise InvalidArgument(
                f"environment variable {name} is set by the scheduler and launcher; "
                f"reserved: {', '.join(_RESERVED_ENV)}"
            )
        if "\x00" in env[name]:
            raise InvalidArgument(f"environment variable {name} holds a NUL character, which no process can receive")


def check_priority_class(name: str, classes: dict[str, int]) -> str:
    """The priority class, `normal` when empty; INVALID_ARGUMENT naming the allowed classes."""
    chosen = name or "normal"
    if chosen not in classes:
        raise InvalidArgument(f"unknown priority class {chosen!r}; allowed: {', '.join(sorted(classes))}")
    return chosen


def check_enums(job: pb.Job) -> None:
    """Every enum field holds one of its values (proto3 lets any number through)."""
    for field, value, enum in (
        ("job.executor", job.executor, pb.ExecutorKind),
        ("job.launcher", job.launcher, pb.Launcher),
        ("job.resources.precision", job.resources.precision, pb.Precision),
    ):
        check_enum(field, value, enum)


def check_limits(job: pb.Job) -> None:
    if job.max_retries < 0:
        raise InvalidArgument(f"max_retries must be >= 0, got {job.max_retries}")
    if job.max_run_time.seconds < 0 or job.max_run_time.nanos < 0:
        raise InvalidArgument("max_run_time must not be negative")


def check_working_directory(path: str) -> None:
    """The directory the job's processes start in: a path without `..` segments (which would climb out
    of what the submitter named) or NUL characters (which no process can receive)."""
    if ".." in path.split("/") or "\x00" in path:
        raise InvalidArgument(
            f"job.working_directory {path!r} has a '..' segment or a NUL character; give a directory without "
            "them (an absolute path such as /home/ana/project, or empty for the job's own directory)",
            metadata={"field": "job.working_directory"},
        )
