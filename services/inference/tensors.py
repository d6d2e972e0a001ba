"""KServe v2 datatypes and tensor bytes: numpy views over raw contents, torch views over numpy.

Raw tensors are row-major little-endian; BF16 travels as 16-bit words (numpy has no bfloat16, so
it is carried as uint16 and viewed as torch.bfloat16); BYTES elements are a 4-byte little-endian
length followed by the bytes. Nothing here loops over elements except BYTES, whose elements have
their own lengths.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from atelier.errors import InvalidArgument
from atelier.inference.protocol import model_config_pb2 as mc
from atelier.registry.v1 import resources_pb2 as registry


@dataclass(frozen=True)
class Datatype:
    """One v2 datatype: its protocol name, Triton's TYPE_* value, and its numpy and torch forms."""

    name: str
    config_type: int
    numpy: str
    """numpy dtype of the wire form ("" for BYTES)."""
    torch: str
    """torch dtype name ("" for BYTES, which no torch tensor holds)."""

    @cached_property
    def size(self) -> int:
        """Bytes per element; 0 for BYTES (worked out once: asked on every request)."""
        return np.dtype(self.numpy).itemsize if self.numpy else 0


DATATYPES: dict[str, Datatype] = {
    d.name: d
    for d in (
        Datatype("BOOL", mc.TYPE_BOOL, "?", "bool"),
        Datatype("UINT8", mc.TYPE_UINT8, "u1", "uint8"),
        Datatype("UINT16", mc.TYPE_UINT16, "<u2", "uint16"),
        Datatype("UINT32", mc.TYPE_UINT32, "<u4", "uint32"),
        Datatype("UINT64", mc.TYPE_UINT64, "<u8", "uint64"),
        Datatype("INT8", mc.TYPE_INT8, "i1", "int8"),
        Datatype("INT16", mc.TYPE_INT16, "<i2", "int16"),
        Datatype("INT32", mc.TYPE_INT32, "<i4", "int32"),
        Datatype("INT64", mc.TYPE_INT64, "<i8", "int64"),
        Datatype("FP16", mc.TYPE_FP16, "<f2", "float16"),
        Datatype("FP32", mc.TYPE_FP32, "<f4", "float32"),
        Datatype("FP64", mc.TYPE_FP64, "<f8", "float64"),
        Datatype("BF16", mc.TYPE_BF16, "<u2", "bfloat16"),
        Datatype("BYTES", mc.TYPE_STRING, "", ""),
    )
}
ALLOWED = ", ".join(DATATYPES)

# The registry's signature types, by their v2 names.
FROM_REGISTRY: dict[int, str] = {
    registry.TENSOR_DATATYPE_BOOL: "BOOL",
    registry.TENSOR_DATATYPE_UINT8: "UINT8",
    registry.TENSOR_DATATYPE_INT8: "INT8",
    registry.TENSOR_DATATYPE_INT16: "INT16",
    registry.TENSOR_DATATYPE_INT32: "INT32",
    registry.TENSOR_DATATYPE_INT64: "INT64",
    registry.TENSOR_DATATYPE_FP16: "FP16",
    registry.TENSOR_DATATYPE_BF16: "BF16",
    registry.TENSOR_DATATYPE_FP32: "FP32",
    registry.TENSOR_DATATYPE_FP64: "FP64",
}


def datatype(name: str) -> Datatype:
    """The datatype called `name`, or InvalidArgument listing the v2 datatypes."""
    found = DATATYPES.get(name)
    if found is None:
        raise InvalidArgument(f"invalid datatype '{name}'; datatypes are {ALLOWED}", metadata={"datatype": name})
    return found


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def decode_raw(name: str, dt: Datatype, shape: Sequence[int], raw: bytes) -> np.ndarray[Any, Any]:
    """A read-only numpy view of one input's raw bytes, after checking their length."""
    count = element_count(shape)
    if dt.name == "BYTES":
        return decode_bytes(name, shape, raw)
    expected = count * dt.size
    if len(raw) != expected:
        raise InvalidArgument(
            f"unexpected total byte size {len(raw)} for input '{name}', expecting {expected}",
            metadata={"input": name, "received": str(len(raw)), "expected": str(expected)},
        )
    return np.frombuffer(raw, dtype=dt.numpy).reshape(tuple(shape))


def decode_bytes(name: str, shape: Sequence[int], raw: bytes) -> np.ndarray[Any, Any]:
    """BYTES elements (length-prefixed) as an object array of `bytes`."""
    count = element_count(shape)
    elements: list[bytes] = []
    offset = 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(
                f"input '{name}': BYTES element {len(elements)} has a truncated 4-byte length",
                metadata={"input": name},
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidArgument(
                f"input '{name}': BYTES element {len(elements)} claims {length} bytes, only {len(raw) - offset} remain",
                metadata={"input": name},
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise InvalidArgument(
            f"unexpected number of string elements {len(elements)} for inference input '{name}', expecting {count}",
            metadata={"input": name, "received": str(len(elements)), "expected": str(count)},
        )
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array.reshape(tuple(shape))


def encode(dt: Datatype, array: np.ndarray[Any, Any]) -> bytes:
    """The raw bytes of an output (row-major, little-endian; BYTES length-prefixed)."""
    if dt.name != "BYTES":
        return np.ascontiguousarray(array, dtype=dt.numpy).tobytes()
    parts: list[bytes] = []
    for element in array.reshape(-1):
        data = element if isinstance(element, bytes) else str(element).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def from_typed(name: str, dt: Datatype, shape: Sequence[int], values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """An input given as typed contents (InferTensorContents or JSON lists)."""
    count = element_count(shape)
    if len(values) != count:
        raise InvalidArgument(
            f"unexpected number of elements {len(values)} for input '{name}', expecting {count}",
            metadata={"input": name, "received": str(len(values)), "expected": str(count)},
        )
    if dt.name == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = [v if isinstance(v, bytes) else str(v).encode() for v in values]
        return array.reshape(tuple(shape))
    if dt.name in ("FP16", "BF16"):
        raise InvalidArgument(
            f"input '{name}' of datatype {dt.name} must travel as raw bytes (raw_input_contents over gRPC, "
            "binary data over HTTP), not typed contents",
            metadata={"input": name, "datatype": dt.name},
        )
    if None in values:
        raise InvalidArgument(
            f"input '{name}' of datatype {dt.name} has a null element; give a number for each",
            metadata={"input": name, "datatype": dt.name},
        )
    try:
        return np.asarray(values, dtype=dt.numpy).reshape(tuple(shape))
    except (ValueError, TypeError, OverflowError) as error:
        raise InvalidArgument(
            f"input '{name}' of datatype {dt.name} takes numbers: {error}",
            metadata={"input": name, "datatype": dt.name},
        ) from None


def to_torch(dt: Datatype, array: np.ndarray[Any, Any]) -> Any:
    """A torch tensor sharing `array`'s memory (BF16 words viewed as bfloat16)."""
    import torch

    if dt.name == "BYTES":
        raise InvalidArgument(f"datatype BYTES cannot be given to a torch model as a tensor ({dt.name})")
    tensor = torch.from_numpy(array)
    if dt.name == "BF16":
        return tensor.view(torch.bfloat16)
    return tensor


def from_torch(dt: Datatype, tensor: Any) -> np.ndarray[Any, Any]:
    """A numpy array of a model output on the CPU, in the wire form of `dt`."""
    import torch

    if tensor.requires_grad:
        tensor = tensor.detach()
    if not tensor.is_cpu:
        tensor = tensor.cpu()
    if dt.name == "BF16":
        tensor = tensor.contiguous().view(torch.uint16)
    elif tensor.dtype != getattr(torch, dt.torch):
        tensor = tensor.to(getattr(torch, dt.torch))
    array: np.ndarray[Any, Any] = tensor.numpy()
    return array
