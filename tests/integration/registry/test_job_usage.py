"""RecordJobUsage: a job's GPU time and energy land on the runs naming the job, and the versions
registered from them show it; totals replace each other (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import store_artifact
from atelier.errors import InvalidArgument
from atelier.registry.v1 import resources_pb2 as pb
from tests.integration.registry.helpers import EXPERIMENT, MODEL

JOB = "projects/lab/jobs/train-7"


def version_of(data: DataClient, registry: RegistryClient, tmp_path: Path, run: str) -> pb.ModelVersion:
    (tmp_path / "model.pt").write_bytes(run.encode())
    artifact = store_artifact(data, "lab", tmp_path / "model.pt")
    return registry.create_version(
        MODEL, pb.ModelVersion(artifact=artifact.name, format=pb.MODEL_FORMAT_TORCHSCRIPT, lineage=pb.Lineage(run=run))
    )


def test_usage_lands_on_the_jobs_runs_and_their_versions(
    stack: tuple[DataClient, RegistryClient], tmp_path: Path
) -> None:
    data, registry = stack
    rank0 = registry.create_run(EXPERIMENT, pb.Run(job=JOB))
    rank1 = registry.create_run(EXPERIMENT, pb.Run(job=JOB))
    other = registry.create_run(EXPERIMENT, pb.Run(job="projects/lab/jobs/other"))
    before = version_of(data, registry, tmp_path, rank0.name)
    assert not rank0.HasField("usage")
    assert not before.HasField("usage")

    first = pb.ResourceUsage(gpu_seconds=1800, energy_joules=360_000, simulated=True)
    assert registry.record_job_usage(JOB, first) == 2
    again = pb.ResourceUsage(gpu_seconds=7200, energy_joules=1_440_000, simulated=True)
    assert registry.record_job_usage(JOB, again) == 2
    assert registry.record_job_usage(JOB, again) == 2  # absolute totals: a repeat changes nothing

    for run in (rank0, rank1):
        usage = registry.get_run(run.name).usage
        assert (usage.gpu_seconds, usage.energy_joules, usage.simulated) == (7200, 1_440_000, True)
        assert usage.update_time.seconds > 0
    assert not registry.get_run(other.name).HasField("usage")
    listed = {r.name: r for r in registry.list_runs(EXPERIMENT)}
    assert listed[rank1.name].usage.gpu_seconds == 7200
    assert not listed[other.name].HasField("usage")

    after = version_of(data, registry, tmp_path, rank1.name)
    assert after.usage.gpu_seconds == 7200  # as created
    for version in (before, after):
        assert registry.get_version(version.name).usage.energy_joules == 1_440_000
    no_run = registry.create_version(
        MODEL, pb.ModelVersion(artifact=before.artifact, format=pb.MODEL_FORMAT_TORCHSCRIPT)
    )
    versions = {v.name: v for v in registry.list_versions(MODEL)}
    assert [versions[v.name].usage.gpu_seconds for v in (before, after)] == [7200, 7200]
    assert not versions[no_run.name].HasField("usage")


def test_a_job_no_run_names_updates_nothing(stack: tuple[DataClient, RegistryClient]) -> None:
    _, registry = stack
    assert registry.record_job_usage("projects/lab/jobs/untracked", pb.ResourceUsage(gpu_seconds=5)) == 0


@pytest.mark.parametrize(
    ("job", "usage", "message"),
    [
        ("train-7", pb.ResourceUsage(), "job"),
        (JOB, pb.ResourceUsage(gpu_seconds=-1), "usage.gpu_seconds must be a finite number >= 0, got -1"),
        (JOB, pb.ResourceUsage(energy_joules=float("nan")), "usage.energy_joules must be a finite number"),
    ],
)
def test_bad_usage_is_refused(
    stack: tuple[DataClient, RegistryClient], job: str, usage: pb.ResourceUsage, message: str
) -> None:
    _, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run(job=JOB))
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        registry.record_job_usage(job, usage)
    assert not registry.get_run(run.name).HasField("usage")


def atelier(stack: tuple[DataClient, RegistryClient], *args: str) -> str:
    env = {
        **os.environ,
        "ATELIER_DATA_ADDRESS": stack[0].address,
        "ATELIER_REGISTRY_ADDRESS": stack[1].address,
        "ATELIER_PROJECT": "lab",
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_runs_show_and_models_show_print_the_recorded_usage(
    stack: tuple[DataClient, RegistryClient], tmp_path: Path
) -> None:
    data, registry = stack
    run = registry.create_run(EXPERIMENT, pb.Run(job=JOB))
    version = version_of(data, registry, tmp_path, run.name)
    registry.record_job_usage(JOB, pb.ResourceUsage(gpu_seconds=5400, energy_joules=1_800_000, simulated=True))

    expected = "1.500 GPU-hours, 0.500 kWh (simulated cards)"
    assert f"GPU use: {expected}" in atelier(stack, "runs", "show", run.name)
    assert f"trained with: {expected}" in atelier(stack, "models", "show", "digits@v1")
    for shown in (
        json.loads(atelier(stack, "runs", "show", run.name, "--json")),
        json.loads(atelier(stack, "models", "show", version.name.split("/")[3] + "@v1", "--json")),
    ):
        assert (shown["usage"]["gpuSeconds"], shown["usage"]["energyJoules"]) == (5400, 1_800_000)
        assert (shown["gpuUsage"]["gpuHours"], shown["gpuUsage"]["energyKwh"]) == (1.5, 0.5)
