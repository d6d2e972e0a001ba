"""Card models a declared inventory can name without spelling out memory and capability.

Memory is the marketed size; compute capabilities are NVIDIA's (developer.nvidia.com/cuda-gpus).
The Alibaba trace's G2 and G3 are unnamed there: they are taken here as 24 GiB, capability 8.6.
"""

from __future__ import annotations

GIB = 1024**3

CARD_MODELS: dict[str, tuple[int, str]] = {
    "P100": (16, "6.0"),
    "V100M16": (16, "7.0"),
    "V100M32": (32, "7.0"),
    "T4": (16, "7.5"),
    "RTX-2080TI": (11, "7.5"),
    "A10": (24, "8.6"),
    "A30": (24, "8.0"),
    "A40": (48, "8.6"),
    "A100-40": (40, "8.0"),
    "A100-80": (80, "8.0"),
    "RTX-3090": (24, "8.6"),
    "RTX-4090": (24, "8.9"),
    "L4": (24, "8.9"),
    "L40S": (48, "8.9"),
    "H100": (80, "9.0"),
    "H200": (141, "9.0"),
    "B200": (180, "10.0"),
    "G2": (24, "8.6"),
    "G3": (24, "8.6"),
}


def card_spec(model: str) -> tuple[int, str] | None:
    """(memory bytes, compute capability) of a known model, None for others."""
    known = CARD_MODELS.get(model)
    return (known[0] * GIB, known[1]) if known else None
