"""Reading a version's file list: paginated listing with a prefix, and diffs between versions."""

from __future__ import annotations

from bisect import bisect_left

from atelier.data.v1 import data_service_pb2 as rpc
from atelier.data.v1 import resources_pb2 as pb
from atelier.errors import InvalidArgument
from atelier.runtime.fields import check_enum
from atelier.runtime.pagination import decode_token, encode_token, page_size
from services.data import manifests
from services.data.catalog import Catalog, HasManifest


def list_files(
    catalog: Catalog, holder: HasManifest, request: rpc.ListFilesRequest
) -> tuple[list[pb.FileEntry], str, str]:
    """A page of files in path order, starting after the token's path, limited to the prefix."""
    check_enum("view", request.view, rpc.FileView)
    loaded = catalog.manifest(holder)
    limit = page_size(request.page_size, default=1000, maximum=10000)
    after = decode_token(request.page_token, None, str)
    if after is not None and not isinstance(after, str):
        raise InvalidArgument("page_token is not a token this service issued", metadata={"field": "page_token"})
    start = bisect_left(loaded.paths, request.prefix)
    if after is not None:
        start = max(start, bisect_left(loaded.paths, after + "\x00"))
    files: list[pb.FileEntry] = []
    index = start
    full = request.view == rpc.FILE_VIEW_FULL
    while index < len(loaded.paths) and len(files) < limit and loaded.paths[index].startswith(request.prefix):
        entry = loaded.manifest.files[index]
        if full:
            files.append(entry)
        else:
            files.append(
                pb.FileEntry(
                    path=entry.path, size_bytes=entry.size_bytes, digest=entry.digest, media_type=entry.media_type
                )
            )
        index += 1
    more = index < len(loaded.paths) and loaded.paths[index].startswith(request.prefix)
    token = encode_token(files[-1].path) if more and files else ""
    return files, token, holder.name


def diff_versions(catalog: Catalog, name: str, other: str) -> rpc.DiffVersionsResponse:
    """Added, removed and modified paths from `other` (older) to `name` (newer)."""
    new = catalog.get_version(name)
    old = catalog.get_version(other)
    changes = []
    for change in manifests.diff(catalog.manifest(old).manifest.files, catalog.manifest(new).manifest.files):
        if change.old is None:
            kind = pb.CHANGE_KIND_ADDED
        elif change.new is None:
            kind = pb.CHANGE_KIND_REMOVED
        else:
            kind = pb.CHANGE_KIND_MODIFIED
        changes.append(
            pb.FileChange(
                path=change.path,
                kind=kind,
                old_size_bytes=change.old.size_bytes if change.old else 0,
                new_size_bytes=change.new.size_bytes if change.new else 0,
            )
        )
    return rpc.DiffVersionsResponse(changes=changes, version=new.name, other_version=old.name)
