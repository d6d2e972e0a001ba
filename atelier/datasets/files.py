"""Reading one file of a version as a seekable binary stream, e.g. inside a training loop."""

from __future__ import annotations

import io

from atelier.client.data import DataClient
from atelier.errors import NotFound
from atelier.names import DatasetRef

DEFAULT_BUFFER = 4 * 1024 * 1024


class VersionFile(io.RawIOBase):
    """A file of a dataset version; each read fetches a verified byte range from the service."""

    def __init__(self, client: DataClient, version: str, path: str, size: int) -> None:
        super().__init__()
        self._client = client
        self.version = version
        self.path = path
        self.size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self.size - self._position)
        if wanted <= 0:
            return 0
        view = memoryview(buffer).cast("B")
        filled = 0
        for piece in self._client.read_file(self.version, self.path, offset=self._position, length=wanted):
            view[filled : filled + len(piece)] = piece
            filled += len(piece)
        self._position += filled
        return filled


def open_file(client: DataClient, ref: DatasetRef, path: str, buffer_size: int = DEFAULT_BUFFER) -> io.BufferedReader:
    """Open `path` of the version `ref` names (resolved once, so a moving tag cannot change it midway)."""
    version = client.get_version(ref.version_name)
    for entry in client.list_files(version.name, prefix=path):
        if entry.path == path:
            raw = VersionFile(client, version.name, path, entry.size_bytes)
            return io.BufferedReader(raw, buffer_size=buffer_size)
    raise NotFound(f"no file {path!r} in {ref}", metadata={"resource": version.name, "path": path})
