"""Serializing a torch module and registering it as a model version with its run's lineage."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atelier.datasets.pull import file_digest
from atelier.datasets.push import store_artifact
from atelier.errors import InvalidArgument
from atelier.registry.v1 import resources_pb2 as pb

if TYPE_CHECKING:
    from atelier.tracking.run import ActiveRun

FORMATS = {
    "torchscript": pb.MODEL_FORMAT_TORCHSCRIPT,
    "export": pb.MODEL_FORMAT_TORCH_EXPORT,
    "state_dict": pb.MODEL_FORMAT_STATE_DICT,
}
_DTYPES = {
    "torch.bool": pb.TENSOR_DATATYPE_BOOL,
    "torch.uint8": pb.TENSOR_DATATYPE_UINT8,
    "torch.int8": pb.TENSOR_DATATYPE_INT8,
    "torch.int16": pb.TENSOR_DATATYPE_INT16,
    "torch.int32": pb.TENSOR_DATATYPE_INT32,
    "torch.int64": pb.TENSOR_DATATYPE_INT64,
    "torch.float16": pb.TENSOR_DATATYPE_FP16,
    "torch.bfloat16": pb.TENSOR_DATATYPE_BF16,
    "torch.float32": pb.TENSOR_DATATYPE_FP32,
    "torch.float64": pb.TENSOR_DATATYPE_FP64,
}


def _tensors(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def tensor_specs(tensors: Sequence[Any], prefix: str) -> list[pb.TensorSpec]:
    """Names, dtypes and shapes, with the first (batch) dimension dynamic."""
    specs = []
    for index, tensor in enumerate(tensors):
        name = prefix if len(tensors) == 1 else f"{prefix}__{index}"
        datatype = _DTYPES.get(str(tensor.dtype))
        if datatype is None:
            raise InvalidArgument(f"tensor {name} has dtype {tensor.dtype}, which a model signature cannot carry")
        shape = [-1, *tensor.shape[1:]] if tensor.dim() else []
        specs.append(pb.TensorSpec(name=name, datatype=datatype, shape=shape))
    return specs


def serialize(module: Any, inputs: tuple[Any, ...], format: str, directory: Path) -> tuple[Path, str]:
    """Write the module in `format`; returns the file and (for state_dict) the class import path."""
    import torch

    if format == "torchscript":
        path = directory / "model.pt"
        torch.jit.trace(module, inputs).save(str(path))  # type: ignore[no-untyped-call]
        return path, ""
    if format == "export":
        path = directory / "model.pt2"
        dynamic = tuple({0: torch.export.Dim.AUTO} for _ in inputs)
        torch.export.save(torch.export.export(module, inputs, dynamic_shapes=dynamic), str(path))
        return path, ""
    path = directory / "model.pt"
    torch.save(module.state_dict(), str(path))
    return path, f"{type(module).__module__}:{type(module).__qualname__}"


def register_model(
    run: ActiveRun,
    module: Any,
    example_input: Any,
    name: str,
    *,
    format: str,
    metrics: dict[str, float] | None,
    parent: str,
    description: str,
) -> pb.ModelVersion:
    """Serialize `module`, store it as an artifact and register a version of model `name`."""
    import torch

    if format not in FORMATS:
        raise InvalidArgument(f"unknown model format {format!r}; formats are {', '.join(FORMATS)}")
    inputs = _tensors(example_input)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            outputs = _tensors(module(*inputs))
        with tempfile.TemporaryDirectory() as scratch:
            path, module_class = serialize(module, inputs, format, Path(scratch))
            artifact = store_artifact(run.data, run.project, path)
            digest = file_digest(path)
    finally:
        module.train(was_training)
    version = pb.ModelVersion(
        artifact=artifact.name,
        artifact_digest=digest,
        format=FORMATS[format],
        module_class=module_class,
        signature=pb.ModelSignature(inputs=tensor_specs(inputs, "input"), outputs=tensor_specs(outputs, "output")),
        lineage=pb.Lineage(run=run.name, parent_model_version=parent),
        metrics=metrics or {},
        description=description,
        author=run.run.user,
    )
    return run.registry.create_version(f"projects/{run.project}/models/{name}", version)
