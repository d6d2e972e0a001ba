"""Between protobuf messages (the v2 protocol and the management API) and the domain."""

from __future__ import annotations

from atelier.errors import InvalidArgument
from atelier.inference.protocol import grpc_service_pb2 as v2
from atelier.inference.protocol import model_config_pb2 as mc
from atelier.inference.v1 import resources_pb2 as pb
from atelier.runtime.timestamps import to_timestamp
from services.inference.deployments import DeploymentView
from services.inference.protocol import InferResult
from services.inference.repository import STATE_NAMES, Served, Status
from services.inference.requests import InferRequest, SequenceFlags, TensorInput
from services.inference.spec import DeploymentSpec
from services.inference.statistics import Duration, ModelStatistics

# Which InferTensorContents field carries each datatype's typed values.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
PLATFORMS = {"TORCHSCRIPT": "pytorch_libtorch", "TORCH_EXPORT": "torch_export"}


def _integer(parameters: object, key: str) -> int:
    param = parameters.get(key)  # type: ignore[attr-defined]
    if param is None:
        return 0
    choice = param.WhichOneof("parameter_choice")
    if choice not in ("int64_param", "uint64_param"):
        raise InvalidArgument(
            f"request parameter '{key}' must be an integer, got {choice or 'nothing'}", metadata={"parameter": key}
        )
    value = int(getattr(param, choice))
    if value < 0:
        raise InvalidArgument(f"request parameter '{key}' must be >= 0, got {value}", metadata={"parameter": key})
    return value


def _sequence(parameters: object) -> SequenceFlags | None:
    param = parameters.get("sequence_id")  # type: ignore[attr-defined]
    if param is None:
        return None
    choice = param.WhichOneof("parameter_choice")
    if choice not in ("int64_param", "uint64_param", "string_param"):
        raise InvalidArgument(
            f"request parameter 'sequence_id' must be an integer or a string, got {choice or 'nothing'}",
            metadata={"parameter": "sequence_id"},
        )
    value = str(getattr(param, choice))
    if value in ("", "0"):
        return None

    def flag(key: str) -> bool:
        given = parameters.get(key)  # type: ignore[attr-defined]
        return bool(given is not None and given.WhichOneof("parameter_choice") == "bool_param" and given.bool_param)

    return SequenceFlags(value, flag("sequence_start"), flag("sequence_end"))


def infer_request(message: v2.ModelInferRequest) -> InferRequest:
    raw = message.raw_input_contents
    tensors = message.inputs
    if raw and len(raw) != len(tensors):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(tensors)} inputs; give one per input, "
            "in the order of inputs, or none",
            metadata={"received": str(len(raw)), "expected": str(len(tensors))},
        )
    inputs = []
    for index, tensor in enumerate(tensors):
        shape = tuple(tensor.shape)  # int64 values: Python ints already
        if raw:
            if tensor.HasField("contents"):  # refused as Triton does: which of the two would count?
                raise InvalidArgument(
                    f"contents field must not be specified when using raw_input_contents for '{tensor.name}' for "
                    f"model '{message.model_name}'; give every input's values in raw_input_contents or every "
                    "input's in its contents",
                    metadata={"input": tensor.name},
                )
            inputs.append(TensorInput(tensor.name, tensor.datatype, shape, raw[index]))
        else:
            field = _CONTENTS.get(tensor.datatype)
            values = list(getattr(tensor.contents, field)) if field else []
            inputs.append(TensorInput(tensor.name, tensor.datatype, shape, values=values))
    parameters = message.parameters
    outputs = message.outputs
    return InferRequest(
        message.model_name,
        message.model_version,
        message.id,
        inputs,
        [o.name for o in outputs] if outputs else [],
        # Most requests carry no parameters: three map lookups saved.
        _integer(parameters, "priority") if parameters else 0,
        _integer(parameters, "timeout") if parameters else 0,
        _sequence(parameters) if parameters else None,
    )


def infer_response(request_id: str, result: InferResult) -> v2.ModelInferResponse:
    response = v2.ModelInferResponse(
        model_name=result.served.deployment_id, model_version=str(result.served.version), id=request_id
    )
    # `add` and `append` build the repeated fields in place (no message made and then copied in).
    tensors = response.outputs
    contents = response.raw_output_contents
    for o in result.outputs:
        tensors.add(name=o.spec.name, datatype=o.spec.datatype.name, shape=o.shape)
        contents.append(o.raw)
    return response


def model_metadata(served: Served) -> v2.ModelMetadataResponse:
    def tensor(spec: object) -> v2.ModelMetadataResponse.TensorMetadata:
        return v2.ModelMetadataResponse.TensorMetadata(
            name=spec.name,  # type: ignore[attr-defined]
            datatype=spec.datatype.name,  # type: ignore[attr-defined]
            shape=spec.shape,  # type: ignore[attr-defined]
        )

    return v2.ModelMetadataResponse(
        name=served.deployment_id,
        versions=[str(served.version)],
        platform=PLATFORMS[served.format],
        inputs=[tensor(t) for t in served.signature.inputs],
        outputs=[tensor(t) for t in served.signature.outputs],
    )


def model_config(served: Served) -> v2.ModelConfigResponse:
    batched = served.signature.batched
    spec = served.spec

    def dims(shape: tuple[int, ...]) -> list[int]:
        return list(shape[1:] if batched else shape)

    config = mc.ModelConfig(
        name=served.deployment_id,
        platform=PLATFORMS[served.format],
        backend="pytorch",
        max_batch_size=spec.max_batch_size if batched else 0,
        input=[
            mc.ModelInput(name=t.name, data_type=t.datatype.config_type, dims=dims(t.shape))  # type: ignore[arg-type]
            for t in served.signature.inputs
        ],
        output=[
            mc.ModelOutput(name=t.name, data_type=t.datatype.config_type, dims=dims(t.shape))  # type: ignore[arg-type]
            for t in served.signature.outputs
        ],
        instance_group=[_instance_group(served)],
    )
    if spec.stateful:
        config.sequence_batching.CopyFrom(_sequence_batching(served))
    elif batched:
        config.dynamic_batching.CopyFrom(
            mc.ModelDynamicBatching(
                preferred_batch_size=list(spec.preferred_batch_sizes),
                max_queue_delay_microseconds=spec.max_queue_delay_us,
                priority_levels=spec.priority_levels if spec.priority_levels > 1 else 0,
                default_priority_level=spec.default_priority if spec.priority_levels > 1 else 0,
                default_queue_policy=mc.ModelQueuePolicy(
                    timeout_action=mc.ModelQueuePolicy.REJECT,
                    default_timeout_microseconds=spec.default_timeout_us,
                    allow_timeout_override=True,
                    max_queue_size=spec.max_queue_size,
                ),
            )
        )
    return v2.ModelConfigResponse(config=config)


def _sequence_batching(served: Served) -> mc.ModelSequenceBatching:
    """Triton's sequence batcher with implicit state, as the deployment runs it."""
    spec = served.spec
    state = served.batcher.runner.signature.input(spec.state_input)
    assert state is not None
    return mc.ModelSequenceBatching(
        max_sequence_idle_microseconds=spec.sequence_idle_timeout_us,
        oldest=mc.ModelSequenceBatching.StrategyOldest(
            max_candidate_sequences=spec.max_sequences,
            preferred_batch_size=list(spec.preferred_batch_sizes),
            max_queue_delay_microseconds=spec.max_queue_delay_us,
        ),
        state=[
            mc.ModelSequenceBatching.State(
                input_name=spec.state_input,
                output_name=spec.state_output,
                data_type=state.datatype.config_type,  # type: ignore[arg-type]
                dims=list(state.shape[1:]),
            )
        ],
    )


def _instance_group(served: Served) -> mc.ModelInstanceGroup:
    device = served.spec.device
    if device == "cpu":
        return mc.ModelInstanceGroup(
            name=f"{served.deployment_id}_0", kind=mc.ModelInstanceGroup.KIND_CPU, count=served.spec.instances
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    return mc.ModelInstanceGroup(
        name=f"{served.deployment_id}_0", kind=mc.ModelInstanceGroup.KIND_GPU, count=served.spec.instances, gpus=[index]
    )


def _duration(d: Duration) -> v2.StatisticDuration:
    return v2.StatisticDuration(count=d.count, ns=d.ns)


def model_statistics(found: list[tuple[str, int, ModelStatistics]]) -> v2.ModelStatisticsResponse:
    response = v2.ModelStatisticsResponse()
    for name, version, statistics in found:
        s = statistics.snapshot()
        response.model_stats.append(
            v2.ModelStatistics(
                name=name,
                version=str(version),
                last_inference=s.last_inference_ms,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
                inference_stats=v2.InferStatistics(
                    success=_duration(s.success),
                    fail=_duration(s.fail),
                    queue=_duration(s.queue),
                    compute_input=_duration(s.compute_input),
                    compute_infer=_duration(s.compute_infer),
                    compute_output=_duration(s.compute_output),
                    cache_hit=v2.StatisticDuration(),
                    cache_miss=v2.StatisticDuration(),
                ),
                batch_stats=[
                    v2.InferBatchStatistics(
                        batch_size=size,
                        compute_input=_duration(b.compute_input),
                        compute_infer=_duration(b.compute_infer),
                        compute_output=_duration(b.compute_output),
                    )
                    for size, b in s.batches.items()
                ],
            )
        )
    return response


def repository_index(known: dict[str, Status], ready_only: bool) -> v2.RepositoryIndexResponse:
    models = [
        v2.RepositoryIndexResponse.ModelIndex(
            name=name,
            version=str(status.version) if status.version else "",
            state=STATE_NAMES.get(status.state, "UNKNOWN").replace("UNLOADED", "UNAVAILABLE"),
            reason=status.reason,
        )
        for name, status in sorted(known.items())
        if not ready_only or status.state == pb.DEPLOYMENT_STATE_READY
    ]
    return v2.RepositoryIndexResponse(models=models)


# Management API --------------------------------------------------------------------------------


def deployment(view: DeploymentView) -> pb.Deployment:
    spec = view.spec
    return pb.Deployment(
        name=view.name,
        model=view.model_ref,
        model_version=view.model_version,
        device=spec.device,
        instances=spec.instances,
        batching=pb.BatchingPolicy(
            max_batch_size=spec.max_batch_size,
            preferred_batch_sizes=list(spec.preferred_batch_sizes),
            max_queue_delay_us=spec.max_queue_delay_us,
            priority_levels=spec.priority_levels,
            default_priority=spec.default_priority,
        ),
        queue=pb.QueuePolicy(max_queue_size=spec.max_queue_size, default_timeout_us=spec.default_timeout_us),
        sequences=pb.SequencePolicy(
            idle_timeout_us=spec.sequence_idle_timeout_us,
            max_sequences=spec.max_sequences,
            state_input=spec.state_input,
            state_output=spec.state_output,
        ),
        state=view.state,  # type: ignore[arg-type]
        state_reason=view.state_reason,
        description=view.description,
        create_time=to_timestamp(view.create_time),
        update_time=to_timestamp(view.update_time),
    )


def deployment_spec(message: pb.Deployment) -> DeploymentSpec:
    """The settings a client gave (zeros stand for the defaults `spec.validated` fills in)."""
    return DeploymentSpec(
        device=message.device,
        instances=message.instances,
        max_batch_size=message.batching.max_batch_size,
        preferred_batch_sizes=tuple(message.batching.preferred_batch_sizes),
        max_queue_delay_us=message.batching.max_queue_delay_us,
        priority_levels=message.batching.priority_levels,
        default_priority=message.batching.default_priority,
        max_queue_size=message.queue.max_queue_size,
        default_timeout_us=message.queue.default_timeout_us,
        sequence_idle_timeout_us=message.sequences.idle_timeout_us,
        max_sequences=message.sequences.max_sequences,
        state_input=message.sequences.state_input,
        state_output=message.sequences.state_output,
    )
