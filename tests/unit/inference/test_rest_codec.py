"""REST v2 bodies: JSON tensors, the binary-tensor extension and their refusals; the batch-size
histogram's buckets; Triton's JSON form of protocol messages."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from atelier.errors import InvalidArgument
from atelier.inference.protocol import grpc_service_pb2 as v2
from services.inference.metrics import batch_size_buckets
from services.inference.rest import proto_json
from services.inference.rest_codec import infer_request, json_flag


def body(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, int | None]:
    encoded = json.dumps(header).encode()
    return encoded + b"".join(chunks), (len(encoded) if chunks else None)


def test_json_tensors_flatten_nested_data_and_read_parameters() -> None:
    request, choice = infer_request(
        "m",
        "2",
        *body(
            {
                "id": "r",
                "parameters": {"priority": 1, "timeout": 500, "sequence_id": 7, "sequence_start": True},
                "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}],
                "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
            }
        ),
    )
    assert (request.model_name, request.model_version, request.id) == ("m", "2", "r")
    assert request.inputs[0].values == [1, 2, 3, 4]
    assert request.inputs[0].raw is None
    assert (request.priority, request.timeout_us) == (1, 500)
    assert request.sequence is not None
    assert (request.sequence.id, request.sequence.start, request.sequence.end) == ("7", True, False)
    assert request.outputs == ["y", "z"]
    assert (choice.wants_binary("y"), choice.wants_binary("z")) == (True, False)


def test_binary_inputs_are_taken_in_order_after_the_header() -> None:
    a = np.arange(4, dtype=np.float32).tobytes()
    b = np.arange(2, dtype=np.int64).tobytes()
    header = {
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(a)}},
            {"name": "j", "shape": [1], "datatype": "INT32", "data": [5]},
            {"name": "b", "shape": [1, 2], "datatype": "INT64", "parameters": {"binary_data_size": len(b)}},
        ],
        "parameters": {"binary_data_output": True},
    }
    request, choice = infer_request("m", "", *body(header, a, b))
    assert [t.raw for t in request.inputs] == [a, None, b]
    assert request.inputs[1].values == [5]
    assert choice.wants_binary("anything")


@pytest.mark.parametrize(
    ("header", "chunks", "message"),
    [
        ({"inputs": {}}, (), "needs 'inputs', a list of tensors"),
        ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, (), "every input needs a 'name'"),
        ({"inputs": [{"name": "x", "shape": "1", "datatype": "FP32", "data": [1]}]}, (), "needs a 'shape'"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": 3, "data": [1]}]}, (), "needs a 'datatype'"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, (), "neither 'data'"),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
            (b"\0" * 8,),
            "add up to 4",
        ),
        (
            {
                "inputs": [
                    {"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"binary_data_size": 4}}
                ]
            },
            (b"\0" * 4,),
            "input 'x' has both 'data' and a 'binary_data_size' parameter",
        ),
        ({"inputs": [], "parameters": {"priority": -1}}, (), "parameter 'priority' must be a non-negative integer"),
        ({"inputs": [], "parameters": {"sequence_start": "yes"}, "outputs": [{}]}, (), "needs a 'name'"),
        ({"inputs": [], "outputs": [{"name": "y", "parameters": {"classification": 3}}]}, (), "classification"),
        ({"inputs": [], "id": 5}, (), "'id' must be a string"),
    ],
)
def test_bad_bodies_are_refused_naming_what_is_wrong(
    header: dict[str, Any], chunks: tuple[bytes, ...], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        infer_request("m", "", *body(header, *chunks))


def test_a_header_length_outside_the_body_and_bad_json_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="must be the length of the JSON header"):
        infer_request("m", "", b"{}", 10)
    with pytest.raises(InvalidArgument, match="failed to parse the request JSON buffer"):
        infer_request("m", "", b"{nope", None)
    assert json_flag(b'{"ready": true}', "ready")
    with pytest.raises(InvalidArgument, match="must be true or false"):
        json_flag(b'{"ready": 1}', "ready")


def test_batch_size_buckets_are_cumulative() -> None:
    buckets = dict(batch_size_buckets({1: 3, 4: 1, 3: 2, 2000: 1}))
    assert (buckets["1.0"], buckets["2.0"], buckets["4.0"], buckets["1024.0"], buckets["+Inf"]) == (3, 3, 6, 6, 7)


def test_proto_json_writes_numbers_enums_by_name_and_zero_counts() -> None:
    metadata = v2.ModelMetadataResponse(
        name="m", versions=["1"], inputs=[v2.ModelMetadataResponse.TensorMetadata(name="x", shape=[-1, 4])]
    )
    written = proto_json(metadata)
    assert written["inputs"] == [{"name": "x", "datatype": "", "shape": [-1, 4]}]
    stats = proto_json(
        v2.ModelStatisticsResponse(
            model_stats=[
                v2.ModelStatistics(name="m", inference_stats=v2.InferStatistics(success=v2.StatisticDuration()))
            ]
        )
    )
    assert stats["model_stats"][0]["inference_stats"]["success"] == {"count": 0, "ns": 0}
    assert stats["model_stats"][0]["inference_count"] == 0
