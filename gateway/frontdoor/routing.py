"""Which service owns a gRPC method path, and how the method streams.

The owner comes from the path's package (`/atelier.data.v1.DataService/GetProject` belongs to `data`,
`/inference.GRPCInferenceService/ModelInfer` to `inference`), so a method the gateway's generated code
does not know yet is still forwarded; the method's descriptor, when known, says whether it is unary
(forwarded on gRPC's cheaper unary path) or streams (forwarded as a stream both ways).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor, descriptor_pool

from atelier.inference.protocol import grpc_service_pb2
from atelier.stack.services import SERVICES
from gateway.descriptors import service_descriptors

KSERVE_PACKAGE = "inference"
"""The KServe v2 protocol's package (`inference.GRPCInferenceService`), served by the inference service."""


@dataclass(frozen=True)
class Route:
    """Where one method path goes."""

    path: str
    service: str
    """The stack service that owns the method (`data`, `scheduler`, `inference`)."""
    kind: str
    """`unary_unary`, `unary_stream`, `stream_unary` or `stream_stream` (methods not in the descriptor
    pool: `stream_stream`, which carries any kind)."""

    @property
    def unary(self) -> bool:
        """Neither side streams."""
        return self.kind == "unary_unary"


def stack_services() -> list[str]:
    """The gRPC services of the local stack (`atelier up`): the services behind the gateway."""
    return [s.name for s in SERVICES if s.kind == "grpc"]


def known_services() -> list[descriptor.ServiceDescriptor]:
    """Every gRPC service the front door can name: Atelier's and the KServe v2 protocol's."""
    return [*service_descriptors(), *grpc_service_pb2.DESCRIPTOR.services_by_name.values()]


def owner_of(service_full_name: str) -> str | None:
    """The stack service behind a gRPC service name, or None for a name outside Atelier's packages."""
    package, _, _ = service_full_name.rpartition(".")
    parts = package.split(".")
    if parts[0] == "atelier" and len(parts) >= 3 and parts[1] != "common":
        return parts[1]
    if package == KSERVE_PACKAGE:
        return "inference"
    return None


def route_of(path: str) -> Route | None:
    """The route of `/package.Service/Method`, or None when no stack service owns it."""
    service_name, _, method_name = path.removeprefix("/").partition("/")
    owner = owner_of(service_name)
    if owner is None or not method_name:
        return None
    try:
        method = descriptor_pool.Default().FindMethodByName(f"{service_name}.{method_name}")
    except KeyError:
        return Route(path, owner, "stream_stream")
    kind = f"{'stream' if method.client_streaming else 'unary'}_{'stream' if method.server_streaming else 'unary'}"
    return Route(path, owner, kind)
