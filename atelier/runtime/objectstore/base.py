"""The object store interface: where the data service keeps pack objects.

Keys are relative POSIX paths (`packs/ab/abcdef...`). Objects are written whole and never
modified in place; a `put` is atomic: readers see the old state or the complete new object,
never a partial one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence


class ObjectStore(ABC):
    """A flat namespace of immutable objects."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically and durably, replacing any previous object."""

    def put_parts(self, key: str, parts: Sequence[bytes | memoryview]) -> None:
        """`put` of the concatenation of `parts`; stores that can write them one after another
        without joining them first do so."""
        self.put(key, b"".join(parts))

    @abstractmethod
    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return `length` bytes of the object from `offset` (to the end when `length` is None).

        Raises `atelier.errors.NotFound` when the object does not exist.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Yield `(key, size)` of every object whose key starts with `prefix`, in key order."""
