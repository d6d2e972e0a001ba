"""The serialized `Manifest` of a pushed tree, written straight to protobuf's wire format.

Building 100,000 `FileEntry` messages and serializing them costs more than reading and hashing
the files; writing the bytes directly is several times faster. The bytes are exactly what
`Manifest.SerializeToString(deterministic=True)` gives (fields in number order, defaults left
out), so a version's digest does not depend on which way its manifest was built; a unit test
holds the two to the same output.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from atelier.chunking import ChunkedFile

# Field keys (field number << 3 | wire type) of Manifest, FileEntry and ChunkRef.
_FILES = b"\x0a"  # Manifest.files, length-delimited
_PATH = b"\x0a"  # FileEntry.path
_SIZE = b"\x10"  # FileEntry.size_bytes, varint
_DIGEST = b"\x1a\x40"  # FileEntry.digest: always 64 hex characters
_CHUNK = b"\x22"  # FileEntry.chunks
_MEDIA = b"\x2a"  # FileEntry.media_type
_REF_DIGEST = b"\x0a\x20"  # ChunkRef.digest: always 32 bytes
_REF_SIZE = b"\x10"  # ChunkRef.size_bytes
# A FileEntry of one chunk, as `%` fills it: its length, the path's length and path, the size, the
# digest, the chunk reference's length, the chunk's digest and size, then the media type's field.
_ONE_CHUNK_ENTRY = (
    _FILES + b"%b" + _PATH + b"%b%b" + _SIZE + b"%b" + _DIGEST + b"%b" + _CHUNK + b"%c"
    + _REF_DIGEST + b"%b" + _REF_SIZE + b"%b%b"
)  # fmt: skip


@functools.lru_cache(maxsize=65536)
def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length(value: int) -> bytes:
    """The varint of a length or size (cached: a tree has few distinct small sizes)."""
    return _varint(value) if value < 1 << 21 else _varint.__wrapped__(value)


# The varints of 0 to 16,383 (one or two bytes), for a small file's record; built on first use.
_SMALL_LIMIT = 1 << 14


@functools.cache
def _small_varints() -> tuple[bytes, ...]:
    return tuple(
        bytes((value,)) if value < 0x80 else bytes((value & 0x7F | 0x80, value >> 7)) for value in range(_SMALL_LIMIT)
    )


def _string(key: bytes, value: bytes) -> bytes:
    return key + _length(len(value)) + value


def _chunk_ref(digest: bytes, size: int) -> bytes:
    body = _REF_DIGEST + digest + _REF_SIZE + _length(size)
    return _CHUNK + _length(len(body)) + body


def encode_manifest(paths: Sequence[str], media_types: Sequence[str], files: Sequence[ChunkedFile]) -> bytes:
    """The serialized Manifest listing `files[i]` at `paths[i]` with `media_types[i]` (paths sorted)."""
    return b"".join(map(encode_entry, paths, media_types, files))


def encode_entry(path: str, media: str, cut: ChunkedFile) -> bytes:
    """One file's record in a serialized Manifest: the manifest is its files' records end to end."""
    chunks = cut.chunks
    if len(chunks) == 1 and chunks[0].length == cut.size < _SMALL_LIMIT and len(path) < _SMALL_LIMIT // 8:
        # The common case of a small file (one chunk, the whole file), in one formatting, its varints
        # looked up: the body's length is known from its parts' lengths (the chunk reference is 35
        # bytes and its size's; path, size and chunk keys 1 byte each, the digest field 66).
        varints = _small_varints()
        name = path.encode()
        size = varints[cut.size]
        named = varints[len(name)]
        media_field = _media_field(media)
        length = 105 + len(named) + len(name) + 2 * len(size) + len(media_field)
        return _ONE_CHUNK_ENTRY % (
            varints[length] if length < _SMALL_LIMIT else _length(length),
            named,
            name,
            size,
            cut.digest.encode(),
            35 + len(size),
            chunks[0].digest,
            size,
            media_field,
        )
    parts = [_string(_PATH, path.encode())]
    if cut.size:
        parts.append(_SIZE + _length(cut.size))
    parts.append(_DIGEST + cut.digest.encode())
    parts.extend(_chunk_ref(span.digest, span.length) for span in chunks)
    parts.append(_media_field(media))
    body = b"".join(parts)
    return _FILES + _length(len(body)) + body


@functools.lru_cache(maxsize=1024)
def _media_field(media: str) -> bytes:
    """FileEntry.media_type's field, or nothing for no media type (a tree has few of them)."""
    return _string(_MEDIA, media.encode()) if media else b""
