"""Pins are a member's write, or a service's: the registry pins lineage as itself for callers it checked."""

from __future__ import annotations

import pytest

from atelier.errors import PermissionDenied
from atelier.runtime.access import RULES, Permission
from atelier.runtime.auth import ClusterRole, Identity, Role, authorize

BATCH_PINS = "/atelier.data.v1.DataService/BatchCreatePins"


def test_pin_calls_take_a_member_or_a_service() -> None:
    for method in ("CreatePin", "BatchCreatePins", "DeletePin"):
        assert RULES[f"/atelier.data.v1.DataService/{method}"].permission is Permission.WRITE_OR_SERVICE


def test_a_service_pins_in_a_project_it_has_no_role_in() -> None:
    service = Identity("serviceAccounts/svc-registry", cluster_roles=frozenset({ClusterRole.CLUSTER_ROLE_SERVICE}))
    authorize(service, BATCH_PINS, RULES[BATCH_PINS], "vision", "projects/vision")


def test_a_member_pins_and_a_viewer_or_an_agent_is_refused() -> None:
    rule = RULES[BATCH_PINS]
    member = Identity("users/ada", project_roles={"vision": Role.ROLE_MEMBER})
    authorize(member, BATCH_PINS, rule, "vision", "projects/vision")
    viewer = Identity("users/bob", project_roles={"vision": Role.ROLE_VIEWER})
    with pytest.raises(PermissionDenied, match="is only viewer in project 'vision'; BatchCreatePins needs member"):
        authorize(viewer, BATCH_PINS, rule, "vision", "projects/vision")
    agent = Identity("serviceAccounts/node-a", cluster_roles=frozenset({ClusterRole.CLUSTER_ROLE_AGENT}))
    with pytest.raises(PermissionDenied, match="has no role in project 'vision'"):
        authorize(agent, BATCH_PINS, rule, "vision", "projects/vision")
