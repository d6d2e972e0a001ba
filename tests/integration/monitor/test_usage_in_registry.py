"""The monitor publishes each job's GPU time and energy to the registry: agents report usage of a
job, a publishing round records the totals on the job's runs, and the model versions registered
from those runs show them. A registry that is not there yet loses nothing; a monitor that
starts again republishes the last day (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from atelier.client import DataClient, RegistryClient
from atelier.client.monitor import MonitorClient
from atelier.datasets.push import store_artifact
from atelier.registry.v1 import resources_pb2 as reg
from atelier.runtime.server import ServiceHost
from services.monitor.publisher import Round
from tests.integration.monitor.test_accounting import sample

JOB = "projects/lab/jobs/train-1"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def publish_round(host: ServiceHost) -> Round:
    """Run the monitor's publishing job once, now (as its timer would)."""
    job = next(j for j in host.jobs if j.name == "publish-usage")
    return cast(Round, job.run())


@dataclass
class Lab:
    serve: Callable[[Callable[[], Any]], str]
    home: Path
    database_url: str
    monitor: MonitorClient
    monitor_host: ServiceHost

    def monitor_settings(self) -> Any:
        from services.monitor.settings import MonitorSettings

        # Rounds run only when a test runs one.
        return MonitorSettings(home=self.home, database_url=self.database_url, usage_publish_seconds=3600)

    def start_registry(self) -> tuple[DataClient, RegistryClient]:
        """A data service and a registry publishing their addresses under the monitor's home."""
        from services.data.server import build as build_data
        from services.data.settings import DataSettings
        from services.registry.server import build as build_registry
        from services.registry.settings import RegistrySettings

        data_address = self.serve(lambda: build_data(DataSettings(home=self.home / "data")))
        settings = RegistrySettings(
            home=self.home,
            database_url=self.database_url,
            data_address=data_address,
            address_file=self.home / "run" / "registry.json",
        )
        return DataClient.at(data_address), RegistryClient.at(self.serve(lambda: build_registry(settings)))


@pytest.fixture
def lab(serve: Callable[[Callable[[], Any]], str], tmp_path: Path, database_url: str) -> Iterator[Lab]:
    from services.monitor.server import build
    from services.monitor.settings import MonitorSettings

    home = tmp_path / "home"
    host = build(MonitorSettings(home=home, database_url=database_url, usage_publish_seconds=3600))
    client = MonitorClient.at(serve(lambda: host))
    yield Lab(serve, home, database_url, client, host)
    client.close()


def trained_version(data: DataClient, registry: RegistryClient, tmp_path: Path, run: str) -> reg.ModelVersion:
    (tmp_path / "model.pt").write_bytes(b"weights")
    artifact = store_artifact(data, "lab", tmp_path / "model.pt")
    lineage = reg.Lineage(run=run)
    version = reg.ModelVersion(artifact=artifact.name, format=reg.MODEL_FORMAT_TORCHSCRIPT, lineage=lineage)
    return registry.create_version("projects/lab/models/digits", version)


def test_a_jobs_usage_reaches_its_run_and_model_version(lab: Lab, tmp_path: Path) -> None:
    lab.monitor.report_usage(
        "nodes/n1", "r1", [sample(JOB, "GPU-a", T0, 1800, 360_000), sample(JOB, "GPU-b", T0, 1800, 360_000)]
    )
    lab.monitor.report_usage("nodes/n2", "r1", [sample("projects/lab/jobs/other", "GPU-c", T0, 60, 6000)])

    # No registry yet: the round fails and keeps the jobs for the next one.
    early = publish_round(lab.monitor_host)
    assert early.runs == 0
    assert "registry" in early.error

    data, registry = lab.start_registry()
    run = registry.create_run("projects/lab/experiments/digits", reg.Run(job=JOB))
    version = trained_version(data, registry, tmp_path, run.name)
    assert not version.HasField("usage")

    assert publish_round(lab.monitor_host) == Round(jobs=2, runs=1)
    usage = registry.get_run(run.name).usage
    assert (usage.gpu_seconds, usage.energy_joules) == (3600, 720_000)
    assert registry.get_version(version.name).usage == usage

    # More usage: the next round sends the new totals, not an increment.
    lab.monitor.report_usage("nodes/n1", "r2", [sample(JOB, "GPU-a", T0 + timedelta(hours=1), 900, 90_000)])
    assert publish_round(lab.monitor_host).error == ""
    assert registry.get_run(run.name).usage.gpu_seconds == 4500
    assert registry.get_version(version.name).usage.energy_joules == 810_000
    # A repeated round (or a retried call) changes no total.
    publish_round(lab.monitor_host)
    again = registry.get_run(run.name).usage
    assert (again.gpu_seconds, again.energy_joules) == (4500, 810_000)
    data.close()
    registry.close()


def test_a_restarted_monitor_republishes_the_last_day(lab: Lab) -> None:
    from services.monitor.server import build

    data, registry = lab.start_registry()
    run = registry.create_run("projects/lab/experiments/digits", reg.Run(job=JOB))
    lab.monitor.report_usage("nodes/n1", "r1", [sample(JOB, "GPU-a", T0, 600, 60_000)])
    # The registry loses what it had (a restore from an older backup, say)...
    registry.record_job_usage(JOB, reg.ResourceUsage())
    assert registry.get_run(run.name).usage.gpu_seconds == 0

    # ...and a monitor started afresh on the same database sends the job again on its first round.
    restarted = build(lab.monitor_settings())
    try:
        assert publish_round(restarted) == Round(jobs=1, runs=1)
    finally:
        for stop in restarted.on_stop:
            stop()
    assert registry.get_run(run.name).usage.gpu_seconds == 600
    data.close()
    registry.close()
