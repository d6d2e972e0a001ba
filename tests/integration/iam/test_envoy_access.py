"""Behind Envoy (`grpc_server = "envoy"`), the inference service checks callers exactly as on grpc.aio:
every RPC refuses a missing, revoked or expired token and a principal without a role in the project,
health stays open, callers with a role get answers, and writes reach the audit log. Listening on every
interface, it exposes Envoy's gRPC port, REST and metrics, and nothing else (its internal grpc.aio port
is on loopback)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.iam.v1 import resources_pb2 as res
from atelier.inference.protocol import grpc_service_pb2 as kserve
from atelier.inference.v1 import inference_service_pb2 as management
from atelier.runtime.access import RULES, Permission
from tests.integration.iam.calls import invoke, methods, owner, path, refusal, request_naming, seed_deployment
from tests.integration.iam.conftest import Iam
from tests.integration.inference.conftest import start_data_and_registry
from tests.integration.inference.envoy_process import inference_in_envoy, listening


def test_envoys_port_checks_every_caller_as_grpc_aio_does(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam
) -> None:
    home = tmp_path / "home"
    data, registry = start_data_and_registry(serve, home)
    iam.call(
        "CreateServiceAccount",
        pb.CreateServiceAccountRequest(
            service_account_id="svc-inference",
            service_account=res.Principal(cluster_roles=[res.ClusterRole.CLUSTER_ROLE_SERVICE]),
        ),
    )
    settings = {
        "ATELIER_AUTH": "on",
        "ATELIER_IAM_ADDRESS": iam.address,
        "ATELIER_TOKEN": iam.token("serviceAccounts/svc-inference"),
        "ATELIER_AUTH_CACHE_SECONDS": "0",
        "ATELIER_INFERENCE_DATA_ADDRESS": data,
        "ATELIER_INFERENCE_REGISTRY_ADDRESS": registry,
        "ATELIER_INFERENCE_DRIFT_SAMPLE_RATE": "0",
        "ATELIER_INFERENCE_HOST": "0.0.0.0",
    }
    member = iam.user("alice", {"vision": res.ROLE_MEMBER})
    outsider = iam.user("outsider", {"elsewhere": res.ROLE_MEMBER})
    revoked = iam.user("gone", {"vision": res.ROLE_MEMBER})
    iam.call(
        "RevokeToken",
        pb.RevokeTokenRequest(name=iam.call("ListTokens", pb.ListTokensRequest(parent="users/gone")).tokens[0].name),
    )
    soon = timestamp_pb2.Timestamp()
    soon.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
    iam.user("brief", {"vision": res.ROLE_MEMBER})
    expired = iam.token("users/brief", expire_time=soon)

    with inference_in_envoy(home, tmp_path / "inference.log", **settings) as (_, published):
        assert published.pid is not None
        ports = [int(where.rsplit(":", 1)[1]) for where in (published.address, published.http, published.metrics)]
        everywhere = {"00000000", "00000000000000000000000000000000"}  # 0.0.0.0 and ::
        exposed = {port for host, port in listening(published.pid) if host in everywhere}
        assert exposed == set(ports)  # Envoy's gRPC port (listening as soon as it is published), REST, metrics
        address = f"127.0.0.1:{ports[0]}"
        seed_deployment(home)
        time.sleep(max(0.0, soon.ToDatetime(UTC).timestamp() - time.time() + 0.2))
        with grpc.insecure_channel(address) as channel:
            checked = 0
            for method in methods():
                rule = RULES[path(method)]
                if owner(method) != "inference" or rule.permission is Permission.PUBLIC:
                    continue
                request = request_naming(method, "vision")
                for token, why in ((None, "needs credentials"), (revoked, "revoked"), (expired, "expired")):
                    refused = refusal(channel, method, request, token)
                    assert refused.startswith("UNAUTHENTICATED"), (path(method), refused)
                    assert why in refused, (path(method), refused)
                if rule.permission is not Permission.AUTHENTICATED:
                    refused = refusal(channel, method, request, outsider)
                    assert refused.startswith("PERMISSION_DENIED"), (path(method), refused)
                checked += 1
            assert checked >= 20

            health = health_pb2_grpc.HealthStub(channel)
            assert (
                health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
                == health_pb2.HealthCheckResponse.SERVING
            )
            auth = (("authorization", f"Bearer {member}"),)
            stub = channel.unary_unary(
                "/atelier.inference.v1.InferenceService/ListDeployments",
                request_serializer=management.ListDeploymentsRequest.SerializeToString,
                response_deserializer=management.ListDeploymentsResponse.FromString,
            )
            listed = stub(management.ListDeploymentsRequest(parent="projects/vision"), metadata=auth, timeout=10)
            assert [d.name for d in listed.deployments] == ["projects/vision/deployments/some-model"]
            live = channel.unary_unary(
                "/inference.GRPCInferenceService/ServerLive",
                request_serializer=kserve.ServerLiveRequest.SerializeToString,
                response_deserializer=kserve.ServerLiveResponse.FromString,
            )
            assert live(kserve.ServerLiveRequest(), metadata=auth, timeout=10).live
            unload = next(m for m in methods() if path(m) == "/inference.GRPCInferenceService/RepositoryModelUnload")
            answer = grpc.StatusCode.OK
            try:
                invoke(channel, unload, request_naming(unload, "vision"), member)
            except grpc.RpcError as error:  # whatever the service answers, the write is audited
                answer = error.code()
            assert answer not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

    deadline = time.monotonic() + 10
    events: list[Any] = []
    while time.monotonic() < deadline and not events:
        audit = iam.call("ListAuditEvents", pb.ListAuditEventsRequest(project="projects/vision")).events
        events = [e for e in audit if e.service == "inference"]
        time.sleep(0.2)
    assert [(e.principal, e.method.rsplit("/", 1)[-1]) for e in events] == [("users/alice", "RepositoryModelUnload")]
    assert all(e.peer for e in events)
