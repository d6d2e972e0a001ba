"""Manifests: the sorted file lists of versions. Validation, path rules, diffs and rebases."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from atelier.data.v1 import resources_pb2 as pb
from atelier.errors import Aborted, InvalidArgument

MAX_PATH = 4096


def path_problem(path: str) -> str | None:
    """Why `path` is not an acceptable relative file path, or None when it is."""
    if not path:
        return "empty path"
    if path.startswith("/"):
        return "absolute path"
    if len(path.encode()) > MAX_PATH:
        return f"longer than {MAX_PATH} bytes"
    if "\\" in path or "\x00" in path:
        return "contains a backslash or NUL"
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            return f"has a {segment or 'empty'!r} segment" if segment else "has an empty segment"
    return None


@dataclass(frozen=True)
class Checked:
    """What a valid manifest references: each distinct chunk with its size, and the files' total."""

    chunks: dict[bytes, int]
    total_size: int


def _lower_hex(text: str) -> bool:
    """Whether `text` is lowercase hexadecimal only. (`bytes.fromhex` checks the digits several
    times faster than a regular expression, but skips whitespace: a decoded length short of half
    the text's means some was there.)"""
    try:
        decoded = bytes.fromhex(text)
    except ValueError:
        return False
    return 2 * len(decoded) == len(text) and text.lower() == text


def validate(manifest: pb.Manifest) -> Checked:
    """Raise InvalidArgument naming the first bad file: bad path, duplicate, wrong order, sizes.

    One pass over the files collects their paths, digests and chunks (reading a field of a
    decoded message is what costs, for millions of files); the paths and digests are then checked
    together, in a few passes over joined strings. Only when that finds a problem are the files
    gone through one by one to name the first bad one."""
    paths: list[str] = []
    digests: list[str] = []
    # A file of one chunk is that chunk: its digest must be the chunk's (checked in one comparison).
    single_files: list[str] = []
    single_chunks: list[bytes] = []
    chunks: dict[bytes, int] = {}
    total_size = 0
    for entry in manifest.files:
        paths.append(entry.path)
        digests.append(entry.digest)
        refs = entry.chunks
        if len(refs) == 1:  # most files: indexing the one chunk costs half of iterating over it
            chunk = refs[0]
            digest, size = chunk.digest, chunk.size_bytes
            if len(digest) != 32 or size <= 0 or size != entry.size_bytes or chunks.setdefault(digest, size) != size:
                return _named_problem(manifest)
            single_files.append(entry.digest)
            single_chunks.append(digest)
            total_size += size
            continue
        total = 0
        for chunk in refs:
            digest, size = chunk.digest, chunk.size_bytes
            if len(digest) != 32 or size <= 0 or chunks.setdefault(digest, size) != size:
                return _named_problem(manifest)
            total += size
        if total != entry.size_bytes:
            return _named_problem(manifest)
        total_size += total
    _check_paths(manifest, paths, digests)
    if "".join(single_files) != b"".join(single_chunks).hex():
        return _named_problem(manifest)
    return Checked(chunks, total_size)


def _named_problem(manifest: pb.Manifest) -> Checked:
    """Raise the error of the first bad file, a bad path or digest before bad chunks."""
    files = manifest.files
    _check_paths(manifest, [f.path for f in files], [f.digest for f in files])
    return _chunks_of(manifest)


def _check_paths(manifest: pb.Manifest, paths: list[str], digests: list[str]) -> None:
    joined = "/" + "/".join(paths) + "/"
    plain = (
        "//" not in joined
        and "/./" not in joined
        and "/../" not in joined
        and "\\" not in joined
        and "\x00" not in joined
        and (not paths or max(map(len, paths)) <= MAX_PATH // 4)
    )
    ordered = plain and paths == sorted(paths) and len(set(paths)) == len(paths)
    hex_ok = all(len(d) == 64 for d in digests) and _lower_hex("".join(digests))
    if not (ordered and hex_ok):
        _first_problem(manifest)


def _first_problem(manifest: pb.Manifest) -> None:
    previous = ""
    hexdigits = "0123456789abcdef"
    for index, entry in enumerate(manifest.files):
        path = entry.path
        framed = f"/{path}/"
        if (
            not path
            or path[0] == "/"
            or "//" in framed
            or "/./" in framed
            or "/../" in framed
            or "\\" in path
            or "\x00" in path
            or len(path) > MAX_PATH // 4
            and len(path.encode()) > MAX_PATH
        ):
            _bad_path(path)
        if index and path <= previous:
            kind = "duplicate path" if path == previous else "paths out of order at"
            raise InvalidArgument(
                f"{kind} {path!r} in manifest", metadata={"field": "manifest.files.path", "value": path}
            )
        previous = path
        digest = entry.digest
        if len(digest) != 64 or digest.strip(hexdigits):
            raise InvalidArgument(
                f"file {path!r} has digest {digest!r}: expected 64 lowercase hex characters (BLAKE3)",
                metadata={"field": "manifest.files.digest", "value": path},
            )


def _bad_path(path: str) -> None:
    problem = path_problem(path) or "not a relative path"
    raise InvalidArgument(
        f"invalid file path {path!r}: {problem}; paths are relative, '/'-separated, "
        "without '.', '..' or empty segments",
        metadata={"field": "manifest.files.path", "value": path},
    )


def _chunks_of(manifest: pb.Manifest) -> Checked:
    """Check that each file's chunks are well formed and add up to its size; collect them."""
    chunks: dict[bytes, int] = {}
    total_size = 0
    for entry in manifest.files:
        total = 0
        for chunk in entry.chunks:
            digest, size = chunk.digest, chunk.size_bytes
            if len(digest) != 32 or size <= 0:
                raise InvalidArgument(
                    f"file {entry.path!r} has a malformed chunk (digest of {len(digest)} bytes, "
                    f"size {size}): digests are 32 bytes, sizes positive",
                    metadata={"field": "manifest.files.chunks", "value": entry.path},
                )
            if chunks.setdefault(digest, size) != size:
                raise InvalidArgument(
                    f"file {entry.path!r} gives chunk {digest.hex()} the size {size}, another file "
                    f"{chunks[digest]}: a chunk has one size",
                    metadata={"field": "manifest.files.chunks", "value": entry.path},
                )
            total += size
        if total != entry.size_bytes:
            raise InvalidArgument(
                f"file {entry.path!r} says {entry.size_bytes} bytes but its chunks add up to {total}",
                metadata={"field": "manifest.files.size_bytes", "value": entry.path},
            )
        if len(entry.chunks) == 1 and entry.digest != entry.chunks[0].digest.hex():
            raise InvalidArgument(
                f"file {entry.path!r} has the digest {entry.digest}, but its one chunk is "
                f"{entry.chunks[0].digest.hex()}: a file of one chunk has that chunk's digest",
                metadata={"field": "manifest.files.digest", "value": entry.path},
            )
        total_size += total
    return Checked(chunks, total_size)


def chunk_sizes(manifest: pb.Manifest) -> dict[bytes, int]:
    """Every distinct chunk the manifest references, with its size."""
    return {c.digest: c.size_bytes for f in manifest.files for c in f.chunks}


def same_content(a: pb.FileEntry, b: pb.FileEntry) -> bool:
    return a.digest == b.digest and a.size_bytes == b.size_bytes and a.media_type == b.media_type


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    old: pb.FileEntry | None
    new: pb.FileEntry | None


def diff(old: Sequence[pb.FileEntry], new: Sequence[pb.FileEntry]) -> Iterator[Change]:
    """Changed paths between two sorted file lists, in path order."""
    i = j = 0
    while i < len(old) or j < len(new):
        if j == len(new) or (i < len(old) and old[i].path < new[j].path):
            yield Change(old[i].path, old[i], None)
            i += 1
        elif i == len(old) or new[j].path < old[i].path:
            yield Change(new[j].path, None, new[j])
            j += 1
        else:
            if not same_content(old[i], new[j]):
                yield Change(old[i].path, old[i], new[j])
            i += 1
            j += 1


def rebase(base: pb.Manifest, ours: pb.Manifest, theirs: pb.Manifest, theirs_name: str) -> pb.Manifest:
    """Apply the changes `ours` made to `base` on top of `theirs`.

    A path both sides changed differently is a conflict: raises Aborted listing the paths.
    """
    result = {f.path: f for f in theirs.files}
    base_by_path = {f.path: f for f in base.files}
    conflicts: list[str] = []
    for change in diff(base.files, ours.files):
        current = result.get(change.path)
        original = base_by_path.get(change.path)
        untouched = (current is None and original is None) or (
            current is not None and original is not None and same_content(current, original)
        )
        agrees = (current is None and change.new is None) or (
            current is not None and change.new is not None and same_content(current, change.new)
        )
        if agrees:
            continue
        if not untouched:
            conflicts.append(change.path)
        elif change.new is None:
            result.pop(change.path, None)
        else:
            result[change.path] = change.new
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        raise Aborted(
            f"cannot rebase onto {theirs_name}: both changed {shown}",
            metadata={"conflicts": str(len(conflicts))},
        )
    merged = pb.Manifest()
    merged.files.extend(result[path] for path in sorted(result))
    return merged
