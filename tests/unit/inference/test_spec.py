"""Deployment settings: defaults and the messages bad values get."""

from __future__ import annotations

import pytest

from atelier.errors import InvalidArgument
from services.inference.spec import DeploymentSpec, parse_device, validated


def test_defaults() -> None:
    spec = validated(DeploymentSpec(instances=0, max_batch_size=0, priority_levels=0, default_priority=0))
    assert (spec.instances, spec.max_batch_size, spec.priority_levels, spec.default_priority) == (1, 8, 1, 1)
    assert validated(DeploymentSpec(priority_levels=3, default_priority=0)).default_priority == 3
    assert validated(DeploymentSpec(preferred_batch_sizes=(4, 2, 4))).preferred_batch_sizes == (2, 4)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12", ""])
def test_devices(device: str) -> None:
    assert parse_device(device) == (device or "cpu")


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:0:1"])
def test_bad_devices(device: str) -> None:
    with pytest.raises(InvalidArgument, match="use cpu, cuda or cuda:N"):
        parse_device(device)


def test_json_round_trip() -> None:
    spec = validated(DeploymentSpec(preferred_batch_sizes=(2, 4), max_queue_delay_us=100))
    assert DeploymentSpec.from_json(spec.to_json()) == spec
