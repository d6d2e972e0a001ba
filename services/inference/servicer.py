"""gRPC handlers: the KServe v2 / Triton protocol and Atelier's deployment management API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from atelier.errors import AtelierError
from atelier.inference.protocol import grpc_service_pb2 as v2
from atelier.inference.protocol import grpc_service_pb2_grpc
from atelier.inference.v1 import inference_service_pb2 as rpc
from atelier.inference.v1 import inference_service_pb2_grpc
from atelier.inference.v1 import resources_pb2 as pb
from atelier.runtime.server import BlockingRunner
from services.inference import convert
from services.inference.control import DeploymentControl
from services.inference.deployments import parse_deployment
from services.inference.protocol import EXTENSIONS, SERVER_VERSION, InferenceProtocol

Context = grpc.aio.ServicerContext[Any, Any]


class ProtocolServicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    """Thin handlers of `inference.GRPCInferenceService` over `InferenceProtocol`."""

    def __init__(self, protocol: InferenceProtocol, run: BlockingRunner) -> None:
        self.protocol = protocol
        self.run = run

    async def ServerLive(self, request: v2.ServerLiveRequest, context: Context) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=self.protocol.live)

    async def ServerReady(self, request: v2.ServerReadyRequest, context: Context) -> v2.ServerReadyResponse:
        return v2.ServerReadyResponse(ready=self.protocol.ready())

    async def ModelReady(self, request: v2.ModelReadyRequest, context: Context) -> v2.ModelReadyResponse:
        return v2.ModelReadyResponse(ready=self.protocol.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: v2.ServerMetadataRequest, context: Context) -> v2.ServerMetadataResponse:
        return v2.ServerMetadataResponse(name=self.protocol.name, version=SERVER_VERSION, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: v2.ModelMetadataRequest, context: Context) -> v2.ModelMetadataResponse:
        return convert.model_metadata(self.protocol.model(request.name, request.version))

    async def ModelConfig(self, request: v2.ModelConfigRequest, context: Context) -> v2.ModelConfigResponse:
        return convert.model_config(self.protocol.model(request.name, request.version))

    async def ModelInfer(self, request: v2.ModelInferRequest, context: Context) -> v2.ModelInferResponse:
        result = await self.protocol.infer(convert.infer_request(request))
        return convert.infer_response(request.id, result)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[v2.ModelInferRequest], context: Context
    ) -> AsyncIterator[v2.ModelStreamInferResponse]:
        """Each request of the stream runs (and batches) on its own; a failure is that request's
        response, with the error message, and the stream goes on."""
        responses: asyncio.Queue[v2.ModelStreamInferResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def answer(request: v2.ModelInferRequest) -> None:
            try:
                result = await self.protocol.infer(convert.infer_request(request))
                response = convert.infer_response(request.id, result)
                await responses.put(v2.ModelStreamInferResponse(infer_response=response))
            except AtelierError as error:
                failed = v2.ModelInferResponse(model_name=request.model_name, id=request.id)
                await responses.put(v2.ModelStreamInferResponse(error_message=error.message, infer_response=failed))

        async def read() -> None:
            async for request in request_iterator:
                task = asyncio.create_task(answer(request))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*running)
            await responses.put(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await responses.get()) is not None:
                yield response
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

    async def ModelStatistics(self, request: v2.ModelStatisticsRequest, context: Context) -> v2.ModelStatisticsResponse:
        return convert.model_statistics(self.protocol.repository.statistics(request.name, request.version))

    async def RepositoryIndex(self, request: v2.RepositoryIndexRequest, context: Context) -> v2.RepositoryIndexResponse:
        return convert.repository_index(self.protocol.index(), request.ready)

    async def RepositoryModelLoad(
        self, request: v2.RepositoryModelLoadRequest, context: Context
    ) -> v2.RepositoryModelLoadResponse:
        await self.protocol.control.load(request.model_name)
        return v2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: v2.RepositoryModelUnloadRequest, context: Context
    ) -> v2.RepositoryModelUnloadResponse:
        await self.protocol.control.unload(request.model_name)
        return v2.RepositoryModelUnloadResponse()

    async def _not_offered(self, request: Any, context: Context) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "Atelier does not offer Triton's shared-memory, trace or log-settings extensions; "
            "send tensors in raw_input_contents",
        )

    SystemSharedMemoryStatus = _not_offered
    SystemSharedMemoryRegister = _not_offered
    SystemSharedMemoryUnregister = _not_offered
    CudaSharedMemoryStatus = _not_offered
    CudaSharedMemoryRegister = _not_offered
    CudaSharedMemoryUnregister = _not_offered
    TraceSetting = _not_offered
    LogSettings = _not_offered


class DeploymentServicer(inference_service_pb2_grpc.InferenceServiceServicer):
    """Thin handlers of `atelier.inference.v1.InferenceService` over `DeploymentControl`."""

    def __init__(self, control: DeploymentControl) -> None:
        self.control = control

    async def CreateDeployment(self, request: rpc.CreateDeploymentRequest, context: Context) -> pb.Deployment:
        given = request.deployment
        view = await self.control.create(
            request.parent, request.deployment_id, given.model, convert.deployment_spec(given), given.description
        )
        return convert.deployment(view)

    async def GetDeployment(self, request: rpc.GetDeploymentRequest, context: Context) -> pb.Deployment:
        return convert.deployment(await self.control.get(request.name))

    async def ListDeployments(
        self, request: rpc.ListDeploymentsRequest, context: Context
    ) -> rpc.ListDeploymentsResponse:
        views, token = await self.control.list_deployments(request.parent, request.page_size, request.page_token)
        return rpc.ListDeploymentsResponse(deployments=[convert.deployment(v) for v in views], next_page_token=token)

    async def UpdateDeployment(self, request: rpc.UpdateDeploymentRequest, context: Context) -> pb.Deployment:
        given = request.deployment
        parse_deployment(given.name)
        view = await self.control.update(
            given.name,
            list(request.update_mask.paths),
            given.model,
            convert.deployment_spec(given),
            given.description,
        )
        return convert.deployment(view)

    async def DeleteDeployment(self, request: rpc.DeleteDeploymentRequest, context: Context) -> empty_pb2.Empty:
        await self.control.delete(request.name)
        return empty_pb2.Empty()
