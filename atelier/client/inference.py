"""Client of the inference service: deployments (Atelier's API) and inference (KServe v2)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import field_mask_pb2

from atelier.client.channel import ServiceClient, connect
from atelier.errors import DeadlineExceeded, InvalidArgument
from atelier.inference.protocol import grpc_service_pb2 as v2
from atelier.inference.protocol import grpc_service_pb2_grpc
from atelier.inference.v1 import inference_service_pb2 as rpc
from atelier.inference.v1 import inference_service_pb2_grpc
from atelier.inference.v1 import resources_pb2 as pb

if TYPE_CHECKING:
    import numpy as np

SETTLED = (pb.DEPLOYMENT_STATE_READY, pb.DEPLOYMENT_STATE_FAILED, pb.DEPLOYMENT_STATE_UNLOADED)
# numpy dtypes of the v2 datatypes a numpy array can carry (BF16 has none in numpy).
_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


class InferenceClient(ServiceClient):
    """Typed calls of `atelier.inference.v1.InferenceService` and `inference.GRPCInferenceService`."""

    service = "inference"

    def __init__(self, channel: grpc.Channel, timeout: float = 30.0, address: str = "") -> None:
        super().__init__(channel, timeout, address)
        self.stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        self.protocol = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)

    @classmethod
    def at(cls, address: str) -> InferenceClient:
        return cls(connect(address), address=address)

    def create(self, project: str, deployment_id: str, deployment: pb.Deployment) -> pb.Deployment:
        request = rpc.CreateDeploymentRequest(
            parent=f"projects/{project}", deployment=deployment, deployment_id=deployment_id
        )
        return self.call(self.stub.CreateDeployment, request)

    def get(self, name: str) -> pb.Deployment:
        return self.call(self.stub.GetDeployment, rpc.GetDeploymentRequest(name=name))

    def list_deployments(self, project: str = "-") -> Iterator[pb.Deployment]:
        request = rpc.ListDeploymentsRequest(parent=f"projects/{project}")
        return self.pages(self.stub.ListDeployments, request, "deployments")

    def update(self, deployment: pb.Deployment, paths: list[str]) -> pb.Deployment:
        request = rpc.UpdateDeploymentRequest(deployment=deployment, update_mask=field_mask_pb2.FieldMask(paths=paths))
        return self.call(self.stub.UpdateDeployment, request)

    def delete(self, name: str) -> None:
        self.call(self.stub.DeleteDeployment, rpc.DeleteDeploymentRequest(name=name))

    def wait_settled(self, name: str, timeout: float = 120.0, poll: float = 0.1) -> pb.Deployment:
        """The deployment once it is READY, FAILED or UNLOADED (DeadlineExceeded after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            deployment = self.get(name)
            if deployment.state in SETTLED:
                return deployment
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"{name} still {pb.DeploymentState.Name(deployment.state)} after {timeout:.0f}s")
            time.sleep(poll)

    def model_metadata(self, model: str) -> v2.ModelMetadataResponse:
        return self.call(self.protocol.ModelMetadata, v2.ModelMetadataRequest(name=model))

    def infer(self, model: str, inputs: dict[str, np.ndarray[Any, Any]], version: str = "") -> dict[str, Any]:
        """One request with numpy inputs; outputs as numpy arrays (BF16 as uint16 words)."""
        import numpy as np  # here, not at the top: the CLI imports this client and numpy costs its start

        request = v2.ModelInferRequest(model_name=model, model_version=version)
        for name, array in inputs.items():
            # By name: byte order aside (the tensor is sent little-endian whatever the array's order).
            datatype = _DATATYPES.get(array.dtype.name)
            if datatype is None:
                raise InvalidArgument(
                    f"input {name!r} has dtype {array.dtype}; allowed numpy dtypes: {', '.join(_DATATYPES)}",
                    metadata={"field": "inputs", "value": name},
                )
            request.inputs.add(name=name, datatype=datatype, shape=array.shape)
            request.raw_input_contents.append(
                np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            )
        response = self.call(self.protocol.ModelInfer, request)
        by_datatype = {v: k for k, v in _DATATYPES.items()} | {"BF16": "uint16"}
        return {
            out.name: np.frombuffer(raw, dtype=np.dtype(by_datatype[out.datatype]).newbyteorder("<")).reshape(out.shape)
            for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        }
