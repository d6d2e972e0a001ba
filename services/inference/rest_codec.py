"""REST v2 inference bodies: JSON tensors and Triton's binary-tensor extension, to and from the
protocol-neutral `InferRequest` and the outputs a request returns.

A body is JSON, or (binary extension) a JSON header of `Inference-Header-Content-Length` bytes
followed by the raw bytes of the inputs whose `parameters` give a `binary_data_size`, in input
order. Outputs come back as JSON `data` unless the request asks for binary data (an output's
`binary_data` parameter, or the request parameter `binary_data_output`), in which case the
response is a JSON header followed by their raw bytes, with `Inference-Header-Content-Length`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atelier.errors import InvalidArgument
from services.inference.protocol import InferResult
from services.inference.queues import OutputTensor
from services.inference.requests import InferRequest, SequenceFlags, TensorInput
from services.inference.tensors import decode_raw

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass
class OutputChoice:
    """Which outputs a REST request wants back as binary data."""

    all_binary: bool = False
    binary: set[str] = field(default_factory=set)

    def wants_binary(self, name: str) -> bool:
        return self.all_binary or name in self.binary


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _integer_parameter(parameters: dict[str, Any], key: str) -> int:
    value = parameters.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(
            f"parameter '{key}' must be a non-negative integer, got {value!r}", metadata={"parameter": key}
        )
    return value


def _flag(parameters: dict[str, Any], key: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"parameter '{key}' must be true or false, got {value!r}", metadata={"parameter": key})
    return value


def _sequence(parameters: dict[str, Any]) -> SequenceFlags | None:
    value = parameters.get("sequence_id", 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgument(f"parameter 'sequence_id' must be an integer or a string, got {value!r}")
    if value in (0, "", "0"):
        return None
    return SequenceFlags(str(value), _flag(parameters, "sequence_start"), _flag(parameters, "sequence_end"))


def _flatten(data: Any) -> Iterator[Any]:
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _split(body: bytes, header_length: int | None) -> tuple[dict[str, Any], memoryview]:
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidArgument(
            f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes; it must be the length of "
            "the JSON header, between 1 and the body's length"
        )
    end = len(body) if header_length is None else header_length
    view = memoryview(body)
    try:
        header = json.loads(bytes(view[:end]))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"failed to parse the request JSON buffer: {error}") from None
    return _object(header, "the inference request"), view[end:]


def _input(tensor: dict[str, Any], binary: memoryview, offset: int) -> tuple[TensorInput, int]:
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("every input needs a 'name' (a string)")
    if not isinstance(datatype, str):
        raise InvalidArgument(f"input '{name}' needs a 'datatype' (a string such as \"FP32\")")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidArgument(f"input '{name}' needs a 'shape' (a list of integers), got {shape!r}")
    parameters = _object(tensor.get("parameters", {}), f"the parameters of input '{name}'")
    if "binary_data_size" in parameters:
        if "data" in tensor:
            raise InvalidArgument(
                f"input '{name}' has both 'data' and a 'binary_data_size' parameter; give its values one way",
                metadata={"input": name},
            )
        size = _integer_parameter(parameters, "binary_data_size")
        if offset + size > len(binary):
            raise InvalidArgument(
                f"input '{name}' has {size} bytes of binary data, but only {len(binary) - offset} remain after the "
                "JSON header",
                metadata={"input": name},
            )
        return TensorInput(name, datatype, tuple(shape), raw=bytes(binary[offset : offset + size])), offset + size
    data = tensor.get("data")
    if not isinstance(data, list):
        raise InvalidArgument(
            f"input '{name}' has neither 'data' (a list) nor a 'binary_data_size' parameter", metadata={"input": name}
        )
    return TensorInput(name, datatype, tuple(shape), values=list(_flatten(data))), offset


def _outputs(requested: Any, choice: OutputChoice) -> list[str]:
    if not isinstance(requested, list):
        raise InvalidArgument("'outputs' must be a list of objects with a 'name'")
    names = []
    for output in requested:
        output = _object(output, "an output")
        name = output.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("every requested output needs a 'name' (a string)")
        parameters = _object(output.get("parameters", {}), f"the parameters of output '{name}'")
        if "classification" in parameters:
            raise InvalidArgument(f"output '{name}': the classification extension is not offered; ask for the tensor")
        if _flag(parameters, "binary_data"):
            choice.binary.add(name)
        names.append(name)
    return names


def infer_request(
    model: str, version: str, body: bytes, header_length: int | None
) -> tuple[InferRequest, OutputChoice]:
    """Parse a REST inference body (JSON, or JSON header + binary tensors)."""
    header, binary = _split(body, header_length)
    parameters = _object(header.get("parameters", {}), "the request's parameters")
    inputs = header.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidArgument("the inference request needs 'inputs', a list of tensors")
    offset = 0
    tensors = []
    for tensor in inputs:
        parsed, offset = _input(_object(tensor, "an input"), binary, offset)
        tensors.append(parsed)
    if offset != len(binary):
        raise InvalidArgument(
            f"the body has {len(binary)} bytes after the JSON header, but the inputs' binary_data_size add up to "
            f"{offset}"
        )
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument(f"'id' must be a string, got {request_id!r}")
    choice = OutputChoice(all_binary=_flag(parameters, "binary_data_output"))
    request = InferRequest(
        model_name=model,
        model_version=version,
        id=request_id,
        inputs=tensors,
        outputs=_outputs(header.get("outputs", []), choice),
        priority=_integer_parameter(parameters, "priority"),
        timeout_us=_integer_parameter(parameters, "timeout"),
        sequence=_sequence(parameters),
    )
    return request, choice


def _json_data(output: OutputTensor) -> list[Any]:
    array = decode_raw(output.spec.name, output.spec.datatype, output.shape, output.raw).reshape(-1)
    name = output.spec.datatype.name
    if name == "BYTES":
        return [bytes(e).decode("utf-8", errors="replace") for e in array]
    if name == "BF16":  # 16-bit words: the top half of a float32
        return (array.astype(np.uint32) << 16).view(np.float32).tolist()  # type: ignore[no-any-return]
    return array.tolist()  # type: ignore[no-any-return]


def infer_response(request_id: str, result: InferResult, choice: OutputChoice) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary outputs, the length of its JSON header."""
    outputs = []
    chunks: list[bytes] = []
    for output in result.outputs:
        tensor: dict[str, Any] = {
            "name": output.spec.name,
            "datatype": output.spec.datatype.name,
            "shape": list(output.shape),
        }
        if choice.wants_binary(output.spec.name):
            tensor["parameters"] = {"binary_data_size": len(output.raw)}
            chunks.append(output.raw)
        else:
            tensor["data"] = _json_data(output)
        outputs.append(tensor)
    response: dict[str, Any] = {
        "model_name": result.served.deployment_id,
        "model_version": str(result.served.version),
        "outputs": outputs,
    }
    if request_id:
        response["id"] = request_id
    header = json.dumps(response).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def json_flag(body: bytes, key: str) -> bool:
    """A boolean field of a small JSON request body (such as the repository index's `ready`)."""
    header, _ = _split(body, None)
    return _flag(header, key)
