"""A served model's tensors, from the registry signature: names, datatypes and shapes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from atelier.errors import FailedPrecondition, InvalidArgument
from atelier.registry.v1 import resources_pb2 as registry
from services.inference.tensors import DATATYPES, FROM_REGISTRY, Datatype


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its shape includes the batch dimension (-1) when the model batches."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs in call and return order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @cached_property
    def batched(self) -> bool:
        """Whether every tensor has a dynamic first (batch) dimension, so requests can be stacked (asked
        on every request, so worked out once)."""
        tensors = (*self.inputs, *self.outputs)
        return bool(tensors) and all(t.shape and t.shape[0] == -1 for t in tensors)

    @cached_property
    def input_names(self) -> dict[str, TensorSpec]:
        """The inputs by name (looked up on every request)."""
        return {t.name: t for t in self.inputs}

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)


def from_registry(signature: registry.ModelSignature, version: str) -> Signature:
    """The signature of a registered version; a version without one cannot be served."""
    if not signature.inputs or not signature.outputs:
        raise FailedPrecondition(
            f"{version} has no signature (inputs and outputs with datatypes and shapes); "
            "register it with log_model or give one",
            metadata={"resource": version},
        )

    def spec(tensor: registry.TensorSpec) -> TensorSpec:
        name = FROM_REGISTRY.get(tensor.datatype)
        if name is None:
            raise FailedPrecondition(
                f"{version}: tensor '{tensor.name}' has no datatype in its signature", metadata={"resource": version}
            )
        return TensorSpec(tensor.name, DATATYPES[name], tuple(int(d) for d in tensor.shape))

    return Signature(tuple(spec(t) for t in signature.inputs), tuple(spec(t) for t in signature.outputs))


def without_state(signature: Signature, state_input: str, state_output: str, version: str) -> Signature:
    """What clients see of a stateful model: its tensors less the state the server carries.

    InvalidArgument names the tensors a state may be when the names do not fit the model.
    """
    if not state_input:
        return signature
    given_in, given_out = signature.input(state_input), signature.output(state_output)
    if given_in is None or given_out is None:
        inputs = ", ".join(t.name for t in signature.inputs)
        outputs = ", ".join(t.name for t in signature.outputs)
        raise InvalidArgument(
            f"{version} has no input '{state_input}' or no output '{state_output}' to carry a sequence's state; "
            f"inputs are {inputs}; outputs are {outputs}",
            metadata={"field": "sequences.state_input"},
        )
    if given_in.datatype != given_out.datatype or given_in.shape != given_out.shape:
        raise InvalidArgument(
            f"state input '{state_input}' is {given_in.datatype.name} {list(given_in.shape)} but state output "
            f"'{state_output}' is {given_out.datatype.name} {list(given_out.shape)}; they must match",
            metadata={"field": "sequences.state_output"},
        )
    if not signature.batched:
        raise InvalidArgument(
            f"{version} has no dynamic batch dimension; a stateful model stacks its sequences along it",
            metadata={"field": "sequences"},
        )
    return Signature(
        tuple(t for t in signature.inputs if t.name != state_input),
        tuple(t for t in signature.outputs if t.name != state_output),
    )
