"""Building pushes by hand, to send the service what a correct client never would."""

from __future__ import annotations

import os
from pathlib import Path

from atelier.chunking import chunk_bytes
from atelier.client import DataClient
from atelier.data.v1 import data_service_pb2 as rpc
from atelier.data.v1 import resources_pb2 as pb


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def random_tree(root: Path, count: int = 20, size: int = 3000) -> dict[str, bytes]:
    files = {f"dir{i % 3}/file{i:03d}.bin": os.urandom(size + i) for i in range(count)}
    write_tree(root, files)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def commit_raw(
    client: DataClient,
    project: str,
    dataset: str,
    entries: list[tuple[str, bytes]],
    *,
    parent: str = "",
    upload: bool = True,
    rebase: bool = False,
) -> pb.DatasetVersion:
    """Upload `entries` (in the given order, unvalidated) and commit them as a version."""
    manifest = pb.Manifest()
    chunks: list[tuple[bytes, bytes | memoryview]] = []
    for path, data in entries:
        cut = chunk_bytes(data)
        entry = manifest.files.add(path=path, size_bytes=cut.size, digest=cut.digest)
        for span in cut.chunks:
            entry.chunks.add(digest=span.digest, size_bytes=span.length)
            chunks.append((span.digest, data[span.offset : span.offset + span.length]))
    raw = manifest.SerializeToString(deterministic=True)
    cut = chunk_bytes(raw)
    manifest_chunks = [(s.digest, raw[s.offset : s.offset + s.length]) for s in cut.chunks]
    client.upload(project, [manifest_chunks + (chunks if upload else [])])
    request = rpc.CreateVersionRequest(
        parent=f"projects/{project}/datasets/{dataset}",
        version=pb.DatasetVersion(parents=[parent] if parent else [], author="tester"),
        manifest_chunks=[pb.ChunkRef(digest=s.digest, size_bytes=s.length) for s in cut.chunks],
        manifest_digest=cut.digest,
        rebase=rebase,
    )
    return client.create_version(request)
