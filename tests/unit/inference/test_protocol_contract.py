"""The KServe v2 / Triton protocol Atelier generates is the very one tritonclient speaks."""

from __future__ import annotations

import subprocess
import sys

from google.protobuf import descriptor_pb2

from atelier.inference.protocol import grpc_service_pb2, model_config_pb2


def _file(module: object) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)  # type: ignore[attr-defined]
    return proto


def _tritonclients(module: str) -> descriptor_pb2.FileDescriptorProto:
    """A file as tritonclient alone registers it (in a process that never imported ours)."""
    code = (
        "import sys; from google.protobuf import descriptor_pb2;"
        f"from tritonclient.grpc import {module} as m;"
        "p = descriptor_pb2.FileDescriptorProto(); m.DESCRIPTOR.CopyToProto(p);"
        "sys.stdout.buffer.write(p.SerializeToString())"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, check=True)
    return descriptor_pb2.FileDescriptorProto.FromString(result.stdout)


def test_descriptors_equal_tritonclients() -> None:
    assert _file(grpc_service_pb2) == _tritonclients("service_pb2")
    assert _file(model_config_pb2) == _tritonclients("model_config_pb2")
    assert grpc_service_pb2.DESCRIPTOR.name == "grpc_service.proto"
    assert grpc_service_pb2.DESCRIPTOR.package == "inference"


def test_ours_and_tritonclients_import_together_in_either_order() -> None:
    ours, theirs = "atelier.inference.protocol.grpc_service_pb2", "tritonclient.grpc"
    for first, second in ((ours, theirs), (theirs, ours)):
        code = (
            f"import importlib; importlib.import_module({first!r}); importlib.import_module({second!r});"
            "from atelier.inference.protocol import grpc_service_pb2 as a;"
            "from tritonclient.grpc import service_pb2 as b;"
            "assert a.ModelInferRequest is b.ModelInferRequest"
        )
        result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_upstream_field_numbers() -> None:
    request = grpc_service_pb2.ModelInferRequest.DESCRIPTOR.fields_by_name
    numbers = {name: request[name].number for name in request}
    assert numbers == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }
    response = grpc_service_pb2.ModelInferResponse.DESCRIPTOR.fields_by_name
    assert {n: response[n].number for n in response} == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "outputs": 5,
        "raw_output_contents": 6,
    }


def test_every_management_rpc_has_an_http_rule() -> None:
    from google.api import annotations_pb2

    from atelier.inference.v1 import inference_service_pb2

    methods = inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].methods
    assert {m.name for m in methods} >= {"CreateDeployment", "GetDeployment", "ListDeployments"}
    for method in methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        assert rule.WhichOneof("pattern"), f"{method.full_name} has no google.api.http annotation"
