"""The RPCs the gateway exposes: every method of Atelier's services that carries a `google.api.http` rule.

The services are found by walking the generated `atelier/<service>/v1/*_pb2` modules, so a new
annotated RPC (or a new service package) is reachable without a change here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message

import atelier
from gateway.templates import PathTemplate, parse_template


class Streaming(StrEnum):
    """Which sides of an RPC stream."""

    UNARY = "unary"
    SERVER = "server"
    CLIENT = "client"
    BIDI = "bidi"


@dataclass(frozen=True)
class HttpBinding:
    """One HTTP method + path template bound to one RPC (a rule or one of its `additional_bindings`)."""

    service: str
    """The stack service that owns the RPC (`data`, `scheduler`): the package's second component."""
    method: descriptor.MethodDescriptor
    http_method: str
    template: PathTemplate
    body: str
    """`*` (the whole request), a top-level field name, or empty (no body)."""
    response_body: str
    index: int
    """0 for the rule itself, 1.. for its additional bindings (keeps operation ids unique)."""

    @property
    def rpc_path(self) -> str:
        """The gRPC method path, `/atelier.data.v1.DataService/GetDataset`."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def streaming(self) -> Streaming:
        client = self.method.client_streaming
        server = self.method.server_streaming
        if client and server:
            return Streaming.BIDI
        if client:
            return Streaming.CLIENT
        return Streaming.SERVER if server else Streaming.UNARY

    @property
    def operation_id(self) -> str:
        base = f"{self.method.containing_service.name}_{self.method.name}"
        return base if self.index == 0 else f"{base}_{self.index}"

    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)


def service_modules() -> Iterator[str]:
    """The names of the generated `atelier.<service>.v1.*_pb2` modules."""
    root = atelier.__path__
    for package in pkgutil.iter_modules(root):
        version = f"atelier.{package.name}.v1"
        try:
            module = importlib.import_module(version)
        except ImportError:
            continue
        for child in pkgutil.iter_modules(module.__path__):
            if child.name.endswith("_pb2"):
                yield f"{version}.{child.name}"


def service_descriptors() -> list[descriptor.ServiceDescriptor]:
    """Every gRPC service declared in Atelier's protos, in a stable order."""
    found: dict[str, descriptor.ServiceDescriptor] = {}
    for name in service_modules():
        file: descriptor.FileDescriptor = importlib.import_module(name).DESCRIPTOR
        for service in file.services_by_name.values():
            found[service.full_name] = service
    return [found[name] for name in sorted(found)]


def http_rule(method: descriptor.MethodDescriptor) -> http_pb2.HttpRule | None:
    """The method's `google.api.http` option, or None when it has none."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    return rule


def bindings(services: list[descriptor.ServiceDescriptor] | None = None) -> list[HttpBinding]:
    """Every HTTP binding of every annotated RPC."""
    found: list[HttpBinding] = []
    for service in service_descriptors() if services is None else services:
        owner = service.full_name.split(".")[1]
        for method in service.methods:
            rule = http_rule(method)
            if rule is None:
                continue
            for index, each in enumerate([rule, *rule.additional_bindings]):
                found.append(_binding(owner, method, each, index))
    return found


def _binding(owner: str, method: descriptor.MethodDescriptor, rule: http_pb2.HttpRule, index: int) -> HttpBinding:
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        raise ValueError(f"the HTTP rule of {method.full_name} has no method/path")
    if pattern == "custom":
        verb, path = rule.custom.kind.upper(), rule.custom.path
    else:
        verb, path = pattern.upper(), getattr(rule, pattern)
    return HttpBinding(
        service=owner,
        method=method,
        http_method=verb,
        template=parse_template(path),
        body=rule.body,
        response_body=rule.response_body,
        index=index,
    )
