"""Inference requests in protocol-neutral form, and their validation against a model.

gRPC (`convert.py`) and REST build `InferRequest`s; `prepare` checks them the way Triton does and
words its errors like Triton (tensor, received and expected values), then decodes the tensors into
numpy views, in the model's input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atelier.errors import InvalidArgument, ResourceExhausted
from services.inference.signature import Signature, TensorSpec
from services.inference.tensors import datatype, decode_raw, from_typed

Array = np.ndarray[Any, Any]


@dataclass
class TensorInput:
    """One input as received: raw bytes or typed values."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | None = None
    values: Sequence[Any] | None = None


@dataclass
class InferRequest:
    """What a client asked for."""

    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: list[TensorInput] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    """Requested output names; empty means every output."""
    priority: int = 0
    """0 means the deployment's default level."""
    timeout_us: int = 0
    """0 means the deployment's default queue timeout."""
    sequence: SequenceFlags | None = None
    """Triton's sequence parameters, when the request belongs to a sequence."""


@dataclass(frozen=True)
class SequenceFlags:
    """`sequence_id`, `sequence_start` and `sequence_end` of a request."""

    id: str
    start: bool = False
    end: bool = False


@dataclass
class Prepared:
    """A validated request: decoded inputs in the model's order and the outputs to return."""

    arrays: list[Array]
    batch_size: int
    outputs: list[TensorSpec]


def _dims(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _shape_fits(expected: Sequence[int], got: Sequence[int]) -> bool:
    return len(expected) == len(got) and all(e in (-1, g) for e, g in zip(expected, got, strict=True))


def _check_names(model: str, signature: Signature, request: InferRequest) -> None:
    given = [t.name for t in request.inputs]
    known = signature.input_names
    for name in given:
        if name not in known:
            allowed = ", ".join(t.name for t in signature.inputs)
            raise InvalidArgument(
                f"unexpected inference input '{name}' for model '{model}', allowed inputs are: {allowed}",
                metadata={"input": name},
            )
    if len(set(given)) != len(given):
        raise InvalidArgument(f"input given more than once in a request for model '{model}': {given}")
    if len(given) != len(known):  # every name known and none twice: some are missing
        missing = [t.name for t in signature.inputs if t.name not in given]
        raise InvalidArgument(
            f"expected {len(signature.inputs)} inputs but got {len(given)} inputs for model '{model}'. "
            f"Got input(s) {given}, but missing required input(s) {missing}. Please provide all required input(s).",
            metadata={"missing": ",".join(missing)},
        )


def _check_input(model: str, spec: TensorSpec, tensor: TensorInput, max_batch: int, batched: bool) -> None:
    if tensor.datatype != spec.datatype.name:  # the right name is a valid one: looked up only when it differs
        dt = datatype(tensor.datatype)
        raise InvalidArgument(
            f"inference input '{tensor.name}' data-type is '{dt.name}', but model '{model}' expects "
            f"'{spec.datatype.name}'",
            metadata={"input": tensor.name, "received": dt.name, "expected": spec.datatype.name},
        )
    if min(tensor.shape, default=0) < 0:
        raise InvalidArgument(
            f"input '{tensor.name}' has shape {_dims(tensor.shape)}: a request gives every dimension, none negative "
            f"(the model takes {_dims(spec.shape)}, -1 meaning any size)",
            metadata={"input": tensor.name, "received": _dims(tensor.shape), "expected": _dims(spec.shape)},
        )
    if not _shape_fits(spec.shape, tensor.shape):
        raise InvalidArgument(
            f"unexpected shape for input '{tensor.name}' for model '{model}'. Expected {_dims(spec.shape)}, "
            f"got {_dims(tensor.shape)}",
            metadata={"input": tensor.name, "received": _dims(tensor.shape), "expected": _dims(spec.shape)},
        )
    if batched and tensor.shape[0] > max_batch:
        raise InvalidArgument(
            f"inference request batch-size must be <= {max_batch} for '{model}', got {tensor.shape[0]} "
            f"in input '{tensor.name}'",
            metadata={"input": tensor.name, "received": str(tensor.shape[0]), "expected": f"<= {max_batch}"},
        )


def prepare(model: str, signature: Signature, request: InferRequest, max_batch: int, max_tensor_bytes: int) -> Prepared:
    """Validate `request` for the model and decode its inputs (numpy views, no copies)."""
    _check_names(model, signature, request)
    given = request.inputs
    specs = signature.inputs
    if len(specs) > 1:
        by_name = {t.name: t for t in given}
        given = [by_name[spec.name] for spec in specs]
    arrays: list[Array] = []
    batched = signature.batched
    for spec, tensor in zip(specs, given, strict=True):
        _check_input(model, spec, tensor, max_batch, batched)
        if tensor.raw is not None and len(tensor.raw) > max_tensor_bytes:
            raise ResourceExhausted(
                f"input '{tensor.name}' is {len(tensor.raw)} bytes, larger than the limit of {max_tensor_bytes} "
                f"bytes for one tensor (ATELIER_INFERENCE_MAX_TENSOR_BYTES)",
                metadata={"input": tensor.name, "received": str(len(tensor.raw)), "expected": str(max_tensor_bytes)},
            )
        if tensor.raw is not None:
            arrays.append(decode_raw(tensor.name, spec.datatype, tensor.shape, tensor.raw))
        else:
            arrays.append(from_typed(tensor.name, spec.datatype, tensor.shape, tensor.values or ()))
        if arrays[-1].nbytes > max_tensor_bytes:
            raise ResourceExhausted(
                f"input '{tensor.name}' is {arrays[-1].nbytes} bytes, larger than the limit of {max_tensor_bytes} "
                f"bytes for one tensor (ATELIER_INFERENCE_MAX_TENSOR_BYTES)",
                metadata={"input": tensor.name},
            )
    if len(arrays) == 1:
        return Prepared(arrays, arrays[0].shape[0] if batched else 1, _outputs(model, signature, request.outputs))
    sizes = {a.shape[0] for a in arrays} if batched else {1}
    if len(sizes) != 1:
        raise InvalidArgument(
            f"inputs of a request for model '{model}' have different batch sizes {sorted(sizes)}; "
            "the first dimension of every input is the batch size"
        )
    return Prepared(arrays, sizes.pop(), _outputs(model, signature, request.outputs))


def _outputs(model: str, signature: Signature, names: list[str]) -> list[TensorSpec]:
    if not names:
        return list(signature.outputs)
    chosen = []
    for name in names:
        spec = signature.output(name)
        if spec is None:
            allowed = ", ".join(t.name for t in signature.outputs)
            raise InvalidArgument(
                f"unexpected inference output '{name}' for model '{model}', allowed outputs are: {allowed}",
                metadata={"output": name},
            )
        chosen.append(spec)
    return chosen
