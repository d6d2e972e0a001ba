"""With access control on, a job is its submitter's and its processes get a short-lived token
scoped to the job's project; agents authenticate with their own node tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atelier.client.channel import connect
from atelier.client.scheduler import AgentClient, SchedulerClient
from atelier.errors import PermissionDenied, Unauthenticated
from atelier.iam.v1 import iam_service_pb2 as iam_pb
from atelier.iam.v1 import resources_pb2 as res
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.agent.discovery import DeclaredInventory
from services.scheduler.catalogue import card_spec
from tests.integration.iam.conftest import Iam, secured
from tests.integration.scheduler.conftest import inventory


def test_a_job_runs_as_its_submitter_with_a_token_scoped_to_its_project(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam
) -> None:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.scheduler.server import build as build_scheduler
    from services.scheduler.settings import SchedulerSettings

    data = serve(lambda: build_data(secured(DataSettings, tmp_path / "data", iam, object_store=str(tmp_path / "o"))))
    settings = secured(SchedulerSettings, tmp_path / "scheduler", iam, data_address=data, cycle_interval_seconds=0.1)
    address = serve(lambda: build_scheduler(settings))
    iam.call(
        "CreateServiceAccount",
        iam_pb.CreateServiceAccountRequest(
            service_account_id="node-a", service_account=res.Principal(cluster_roles=[res.CLUSTER_ROLE_AGENT])
        ),
    )
    agents = AgentClient(connect(address, token=iam.token("serviceAccounts/node-a")))
    alice = SchedulerClient(connect(address, token=iam.user("alice", {"vision": res.ROLE_MEMBER})))

    found = DeclaredInventory(inventory("A100-40"), card_spec).inventory()
    agents.register(pb.Node(address="a.lab", cards=found.cards, links=found.links, discovery="declared"), "a")
    with pytest.raises(PermissionDenied, match="cluster role agent"):
        AgentClient(connect(address, token=iam.token("users/alice"))).register(
            pb.Node(address="b.lab", cards=found.cards, discovery="declared"), "b"
        )
    with pytest.raises(Unauthenticated):
        AgentClient(connect(address, token="")).heartbeat("nodes/a", [], [])

    job = alice.submit(
        "vision", pb.Job(command=["python", "train.py"], resources=pb.Resources(gpus_per_node=1), user="mallory")
    )
    assert job.user == "alice"
    deadline = time.monotonic() + 30
    while not (tasks := list(agents.heartbeat("nodes/a", [], []).tasks)):
        assert time.monotonic() < deadline, "the job was never placed"
        time.sleep(0.1)
    token = tasks[0].env["ATELIER_TOKEN"]
    identity = iam.call("Authenticate", iam_pb.AuthenticateRequest(token=token))
    assert identity.principal == "users/alice"
    assert (identity.scope_project, identity.scope_role) == ("projects/vision", res.ROLE_MEMBER)
    assert identity.HasField("expire_time")
    again = list(agents.heartbeat("nodes/a", [], []).tasks)
    assert again[0].env["ATELIER_TOKEN"] == token
