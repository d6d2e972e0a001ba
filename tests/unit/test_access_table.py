"""The access table covers every RPC of every service, and names fields that exist."""

from __future__ import annotations

import importlib

import pytest
from google.protobuf import descriptor

from atelier.runtime.access import OPEN_PREFIXES, RULES, Permission
from atelier.runtime.auth import Authorizer
from gateway.descriptors import service_descriptors

KSERVE = importlib.import_module("atelier.inference.protocol.grpc_service_pb2").DESCRIPTOR.services_by_name[
    "GRPCInferenceService"
]


def every_method() -> list[descriptor.MethodDescriptor]:
    return [m for s in [*service_descriptors(), KSERVE] for m in s.methods]


def path(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@pytest.mark.parametrize("method", every_method(), ids=path)
def test_every_rpc_has_a_rule_naming_a_string_field_of_its_request(method: descriptor.MethodDescriptor) -> None:
    rule = RULES.get(path(method))
    assert rule is not None, f"{path(method)} has no entry in atelier/runtime/access.py (it would be refused)"
    if rule.project_scoped or rule.permission in (Permission.SELF, Permission.SELF_OR_SERVICE):
        assert rule.field, f"{path(method)} needs a field to find its project"
    if rule.field:
        message = method.input_type
        for part in rule.field.split("."):
            assert part in message.fields_by_name, f"{path(method)}: no field {rule.field!r} in {message.full_name}"
            found = message.fields_by_name[part]
            message = found.message_type
        assert found.type == descriptor.FieldDescriptor.TYPE_STRING


def test_the_table_names_no_rpc_that_does_not_exist() -> None:
    assert sorted(set(RULES) - {path(m) for m in every_method()}) == []


def test_health_and_reflection_are_open_and_everything_else_is_checked() -> None:
    assert not Authorizer.applies_to("/grpc.health.v1.Health/Check")
    assert not Authorizer.applies_to("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert all(not p.startswith(OPEN_PREFIXES) for p in RULES)
    assert Authorizer.applies_to("/atelier.data.v1.DataService/NewRpcWithoutARule")
