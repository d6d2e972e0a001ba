"""With access control on, only Atelier services record a job's usage on its runs: the monitor
publishes with its own service token; a project member (even the run's owner) is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from atelier.client.channel import connect
from atelier.client.monitor import MonitorClient
from atelier.client.registry import RegistryClient
from atelier.errors import PermissionDenied
from atelier.iam.v1 import iam_service_pb2 as iam_pb
from atelier.iam.v1 import resources_pb2 as res
from atelier.registry.v1 import resources_pb2 as reg
from services.monitor.publisher import Round
from tests.integration.iam.conftest import Iam, secured
from tests.integration.monitor.test_accounting import sample

JOB = "projects/vision/jobs/train"


def test_only_services_record_usage_and_the_monitor_does(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam
) -> None:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.monitor.server import build as build_monitor
    from services.monitor.settings import MonitorSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings

    data = serve(lambda: build_data(secured(DataSettings, tmp_path / "data", iam, object_store=str(tmp_path / "o"))))
    registry_settings = secured(RegistrySettings, tmp_path / "reg", iam, data_address=data)
    registry_address = serve(lambda: build_registry(registry_settings))
    monitor_settings = secured(
        MonitorSettings, tmp_path / "mon", iam, registry_address=registry_address, usage_publish_seconds=3600
    )
    monitor_host = build_monitor(monitor_settings)
    monitor_address = serve(lambda: monitor_host)
    iam.call(
        "CreateServiceAccount",
        iam_pb.CreateServiceAccountRequest(
            service_account_id="node-a", service_account=res.Principal(cluster_roles=[res.CLUSTER_ROLE_AGENT])
        ),
    )
    agent = MonitorClient(connect(monitor_address, token=iam.token("serviceAccounts/node-a")))
    alice = RegistryClient(connect(registry_address, token=iam.user("alice", {"vision": res.ROLE_MEMBER})))

    run = alice.create_run("projects/vision/experiments/cnn", reg.Run(job=JOB))
    with pytest.raises(PermissionDenied):
        alice.record_job_usage(JOB, reg.ResourceUsage(gpu_seconds=1e9))
    assert not alice.get_run(run.name).HasField("usage")

    start = datetime.now(UTC) - timedelta(minutes=30)
    agent.report_usage("nodes/a", "r1", [sample(JOB, "GPU-a", start, 600, 150_000)])
    publish = next(j for j in monitor_host.jobs if j.name == "publish-usage")
    assert cast(Round, publish.run()) == Round(jobs=1, runs=1)
    usage = alice.get_run(run.name).usage
    assert (usage.gpu_seconds, usage.energy_joules) == (600, 150_000)
    agent.close()
    alice.close()
