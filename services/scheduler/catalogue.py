"""Card models a declared inventory can name without spelling out memory and capability: the
catalogue of the shared scheduling core, as the agent's discovery looks it up."""

from __future__ import annotations

from atelier.scheduling import CARD_MODELS


def card_spec(model: str) -> tuple[int, str] | None:
    """(memory bytes, compute capability) of a known model, None for others."""
    known = CARD_MODELS.get(model)
    return (known.memory_bytes, f"{known.capability[0]}.{known.capability[1]}") if known else None
