"""How a deployment is served: device, instances, batching, queue and sequence settings.

Plain values, validated here with messages that name the field, the value and what is allowed, so
the gRPC servicer, a REST router and the CLI share one set of rules.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from atelier.errors import FailedPrecondition, InvalidArgument

DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_IDLE_TIMEOUT_US = 60_000_000
DEFAULT_MAX_SEQUENCES = 64
MAX_INSTANCES = 64
MAX_BATCH_SIZE_LIMIT = 4096
MAX_PRIORITY_LEVELS = 16
_DEVICE = re.compile(r"cpu|cuda(?::(\d+))?")


@dataclass(frozen=True)
class DeploymentSpec:
    """Serving settings of one deployment (zeros in the API mean the defaults filled in here)."""

    device: str = "cpu"
    instances: int = 1
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    priority_levels: int = 1
    default_priority: int = 0  # 0: the lowest level
    max_queue_size: int = 0
    default_timeout_us: int = 0
    sequence_idle_timeout_us: int = DEFAULT_IDLE_TIMEOUT_US
    max_sequences: int = DEFAULT_MAX_SEQUENCES
    state_input: str = ""
    state_output: str = ""

    @property
    def stateful(self) -> bool:
        """Whether the server keeps a state per sequence (both state tensors named)."""
        return bool(self.state_input and self.state_output)

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["preferred_batch_sizes"] = list(self.preferred_batch_sizes)
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> DeploymentSpec:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        known["preferred_batch_sizes"] = tuple(known.get("preferred_batch_sizes", ()))
        return cls(**known)


def _check(condition: bool, field_name: str, value: object, allowed: str) -> None:
    if not condition:
        raise InvalidArgument(
            f"{field_name} is {value!r}; {allowed}", metadata={"field": field_name, "value": str(value)}
        )


def parse_device(device: str) -> str:
    """`cpu`, `cuda` or `cuda:N` (empty means `cpu`)."""
    device = device.strip() or "cpu"
    _check(_DEVICE.fullmatch(device) is not None, "device", device, "use cpu, cuda or cuda:N (N a card index)")
    return device


def check_device_available(device: str) -> None:
    """Refuse a CUDA device this server does not have, naming what it has."""
    if device == "cpu":
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        have = "no CUDA device" if count == 0 else f"CUDA devices cuda:0..cuda:{count - 1}"
        raise FailedPrecondition(
            f"device {device} is not available: this inference server has {have}",
            metadata={"field": "device", "value": device},
        )


def validated(spec: DeploymentSpec) -> DeploymentSpec:
    """The spec with defaults filled in, or InvalidArgument naming the first bad field."""
    device = parse_device(spec.device)
    instances = spec.instances or 1
    _check(1 <= instances <= MAX_INSTANCES, "instances", spec.instances, f"use 1 to {MAX_INSTANCES}")
    max_batch = spec.max_batch_size or DEFAULT_MAX_BATCH_SIZE
    _check(
        1 <= max_batch <= MAX_BATCH_SIZE_LIMIT,
        "batching.max_batch_size",
        spec.max_batch_size,
        f"use 1 to {MAX_BATCH_SIZE_LIMIT}",
    )
    preferred = tuple(sorted(set(spec.preferred_batch_sizes)))
    for size in preferred:
        _check(
            1 <= size <= max_batch,
            "batching.preferred_batch_sizes",
            size,
            f"each preferred size must be 1 to max_batch_size ({max_batch})",
        )
    _check(spec.max_queue_delay_us >= 0, "batching.max_queue_delay_us", spec.max_queue_delay_us, "use 0 or more")
    levels = spec.priority_levels or 1
    _check(
        1 <= levels <= MAX_PRIORITY_LEVELS,
        "batching.priority_levels",
        spec.priority_levels,
        f"use 1 to {MAX_PRIORITY_LEVELS}",
    )
    default_priority = spec.default_priority or levels
    _check(
        1 <= default_priority <= levels,
        "batching.default_priority",
        spec.default_priority,
        f"use 1 (highest) to priority_levels ({levels})",
    )
    _check(spec.max_queue_size >= 0, "queue.max_queue_size", spec.max_queue_size, "use 0 (no limit) or more")
    _check(spec.default_timeout_us >= 0, "queue.default_timeout_us", spec.default_timeout_us, "use 0 (none) or more")
    idle = spec.sequence_idle_timeout_us or DEFAULT_IDLE_TIMEOUT_US
    _check(idle > 0, "sequences.idle_timeout_us", spec.sequence_idle_timeout_us, "use more than 0")
    max_sequences = spec.max_sequences or DEFAULT_MAX_SEQUENCES
    _check(max_sequences > 0, "sequences.max_sequences", spec.max_sequences, "use more than 0")
    _check(
        bool(spec.state_input) == bool(spec.state_output),
        "sequences.state_input" if not spec.state_input else "sequences.state_output",
        "",
        "a stateful model names both its state input and its state output",
    )
    return DeploymentSpec(
        device=device,
        instances=instances,
        max_batch_size=max_batch,
        preferred_batch_sizes=preferred,
        max_queue_delay_us=spec.max_queue_delay_us,
        priority_levels=levels,
        default_priority=default_priority,
        max_queue_size=spec.max_queue_size,
        default_timeout_us=spec.default_timeout_us,
        sequence_idle_timeout_us=idle,
        max_sequences=max_sequences,
        state_input=spec.state_input,
        state_output=spec.state_output,
    )
