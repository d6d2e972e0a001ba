"""Progress reporting hooks for long dataset operations (the CLI draws them with rich)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives how far an operation has got."""

    def phase(self, description: str, total: int | None, unit: str = "bytes") -> None:
        """A new phase starts: `total` units (`bytes` or `files`), or unknown."""

    def advance(self, amount: int) -> None:
        """`amount` more units of the current phase are done."""


class NoProgress:
    """Reports nothing."""

    def phase(self, description: str, total: int | None, unit: str = "bytes") -> None:
        return None

    def advance(self, amount: int) -> None:
        return None
