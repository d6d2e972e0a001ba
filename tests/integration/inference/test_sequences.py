"""Stateful serving: Triton's sequence parameters over a stream, the server carrying the state."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.integration.inference.conftest import Platform, Stream
from tests.integration.inference.models import Recurrent

STATE = {"state_input": "input__1", "state_output": "output__1"}


def offline(model: Recurrent, xs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The model run over a whole sequence in one process, the state threaded by hand."""
    state = torch.zeros(1, 5)
    outputs = []
    with torch.no_grad():
        for x in xs:
            y, state = model(torch.from_numpy(x[None]), state)
            outputs.append(y.numpy()[0])
    return np.stack(outputs)


def step(x: np.ndarray[Any, Any]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("input__0", [1, 3], "FP32")
    tensor.set_data_from_numpy(x[None].astype(np.float32))
    return tensor


@pytest.fixture
def recurrent(platform: Platform) -> Recurrent:
    model = Recurrent()
    platform.register(model, (torch.randn(2, 3), torch.randn(2, 5)), "rnn")
    return model


def run_sequences(platform: Platform, sequences: dict[int, np.ndarray[Any, Any]]) -> dict[int, np.ndarray[Any, Any]]:
    """Send the sequences' steps interleaved on one stream; each step's output, by sequence."""
    stream = Stream(platform.triton())
    length = len(next(iter(sequences.values())))
    for t in range(length):
        for sequence_id, xs in sequences.items():
            stream.send(
                "rnn",
                [step(xs[t])],
                f"{sequence_id}-{t}",
                sequence_id=sequence_id,
                sequence_start=t == 0,
                sequence_end=t == length - 1,
            )
    got: dict[int, dict[int, np.ndarray[Any, Any]]] = {s: {} for s in sequences}
    for _ in range(length * len(sequences)):
        request_id, result, error = stream.next()
        assert error is None, error
        sequence_id, t = (int(part) for part in request_id.split("-"))
        got[sequence_id][t] = result.as_numpy("output__0")[0]
    stream.close()
    return {s: np.stack([steps[t] for t in range(length)]) for s, steps in got.items()}


def test_outputs_equal_the_model_run_offline_and_sequences_batch_together(
    platform: Platform, recurrent: Recurrent
) -> None:
    platform.deploy(
        "rnn",
        "rnn@latest",
        batching={"max_batch_size": 4, "preferred_batch_sizes": [2], "max_queue_delay_us": 120_000_000},
        sequences=STATE,
    )
    rng = np.random.default_rng(8)
    sequences = {11: rng.standard_normal((5, 3)).astype(np.float32), 22: rng.standard_normal((5, 3)).astype(np.float32)}
    got = run_sequences(platform, sequences)
    for sequence_id, xs in sequences.items():
        np.testing.assert_allclose(got[sequence_id], offline(recurrent, xs), rtol=1e-5, atol=1e-6)
    stats = platform.triton().get_inference_statistics("rnn").model_stats[0]
    # Step t of both sequences ran as one batch of two, and never two steps of one sequence.
    assert (stats.inference_count, stats.execution_count) == (10, 5)
    assert [b.batch_size for b in stats.batch_stats] == [2]


def test_several_instances_each_keep_their_sequences(platform: Platform, recurrent: Recurrent) -> None:
    platform.deploy("rnn", "rnn@latest", instances=2, sequences=STATE)
    rng = np.random.default_rng(9)
    sequences = {s: rng.standard_normal((4, 3)).astype(np.float32) for s in (1, 2, 3)}
    got = run_sequences(platform, sequences)
    for sequence_id, xs in sequences.items():
        np.testing.assert_allclose(got[sequence_id], offline(recurrent, xs), rtol=1e-5, atol=1e-6)
    # Ended sequences are freed: the same ids start afresh and give the same outputs again (to float32
    # rounding: the batches mix sequences differently each time, and a product's sums may round differently).
    again = run_sequences(platform, sequences)
    for sequence_id in sequences:
        np.testing.assert_allclose(again[sequence_id], got[sequence_id], rtol=1e-5, atol=1e-6)


def test_the_state_is_hidden_from_clients_and_sequence_rules(platform: Platform, recurrent: Recurrent) -> None:
    platform.deploy("rnn", "rnn@latest", sequences={**STATE, "max_sequences": 1})
    client = platform.triton()
    metadata = client.get_model_metadata("rnn")
    assert [t.name for t in metadata.inputs] == ["input__0"]
    assert [t.name for t in metadata.outputs] == ["output__0"]
    config = client.get_model_config("rnn").config
    assert config.WhichOneof("scheduling_choice") == "sequence_batching"
    state = config.sequence_batching.state[0]
    assert (state.input_name, state.output_name, list(state.dims)) == ("input__1", "output__1", [5])
    x = np.zeros(3, dtype=np.float32)
    with pytest.raises(InferenceServerException, match="must specify a non-zero or non-empty correlation ID"):
        client.infer("rnn", [step(x)])
    with pytest.raises(InferenceServerException, match="must specify the START flag on the first request"):
        client.infer("rnn", [step(x)], sequence_id=5)
    client.infer("rnn", [step(x)], sequence_id=5, sequence_start=True)
    with pytest.raises(InferenceServerException, match="holds its maximum of 1 sequences") as full:
        client.infer("rnn", [step(x)], sequence_id=6, sequence_start=True)
    assert full.value.status() == "StatusCode.UNAVAILABLE"
    client.infer("rnn", [step(x)], sequence_id=5, sequence_end=True)
    client.infer("rnn", [step(x)], sequence_id=6, sequence_start=True, sequence_end=True)


def test_state_tensors_the_model_lacks_are_refused(platform: Platform, recurrent: Recurrent) -> None:
    from atelier.errors import InvalidArgument
    from atelier.inference.v1 import resources_pb2 as pb

    with pytest.raises(InvalidArgument, match="has no input 'hidden' or no output 'output__1'"):
        platform.inference.create(
            "lab",
            "rnn",
            pb.Deployment(model="rnn@latest", sequences={"state_input": "hidden", "state_output": "output__1"}),
        )
    with pytest.raises(InvalidArgument, match="state input 'input__0' is FP32 \\[-1, 3\\] but state output"):
        platform.inference.create(
            "lab",
            "rnn",
            pb.Deployment(model="rnn@latest", sequences={"state_input": "input__0", "state_output": "output__1"}),
        )
