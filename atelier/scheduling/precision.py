"""Numeric precisions a card computes in natively, decided from its CUDA compute capability."""

from __future__ import annotations

from enum import StrEnum

from atelier.errors import InvalidArgument

Capability = tuple[int, int]
"""A CUDA compute capability as (major, minor), e.g. (8, 0) for an A100."""


class Precision(StrEnum):
    """A precision a job may require of every card it gets."""

    FP32 = "fp32"
    FP16 = "fp16"
    TF32 = "tf32"
    BF16 = "bf16"
    FP8 = "fp8"


# Native support by compute capability. `torch.cuda.is_bf16_supported()` also counts emulation,
# so the decision is made from the capability alone. fp8 on 8.9 also needs CUDA >= 12.1.
MIN_CAPABILITY: dict[Precision, Capability] = {
    Precision.FP32: (0, 0),
    Precision.FP16: (7, 0),
    Precision.TF32: (8, 0),
    Precision.BF16: (8, 0),
    Precision.FP8: (8, 9),
}

_BY_CAPABILITY: dict[Capability, frozenset[Precision]] = {}


def precisions_for(capability: Capability) -> frozenset[Precision]:
    """The precisions a card of this compute capability supports natively (fp32 always; fp16 from 7.0;
    tf32 and bf16 from 8.0; fp8 from 8.9)."""
    known = _BY_CAPABILITY.get(capability)
    if known is None:
        known = frozenset(p for p, needed in MIN_CAPABILITY.items() if capability >= needed)
        _BY_CAPABILITY[capability] = known
    return known


def parse_capability(text: str) -> Capability:
    """`"8.6"` -> (8, 6); INVALID_ARGUMENT naming the value otherwise."""
    major, dot, minor = text.strip().partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise InvalidArgument(f"compute capability {text!r} is not MAJOR.MINOR (e.g. 8.0)")
    return int(major), int(minor)


def format_capability(capability: Capability) -> str:
    """(8, 6) -> `"8.6"`."""
    return f"{capability[0]}.{capability[1]}"


def parse_precision(name: str) -> Precision:
    """A precision from its name (case-insensitive); INVALID_ARGUMENT listing the allowed names."""
    try:
        return Precision(name.strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in Precision)
        raise InvalidArgument(f"unknown precision {name!r}; allowed: {allowed}") from None
