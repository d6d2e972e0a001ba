"""HTTP byte ranges (RFC 9110 §14): parsing a `Range` header and framing several ranges as
`multipart/byteranges` (§14.6).

`Range: bytes=a-b`, `a-` and `-n` specs, one or several separated by commas. A spec that starts at or
past the end (or is empty, `-0`, or `b < a`) is not satisfiable; the others are kept, and when none is
left the answer is 416. Ranges that overlap or touch are coalesced into one (the order given is kept
otherwise), so no byte is sent twice. A header with more than `MAX_RANGES` specs, or one that is not
`bytes=`, is ignored: the whole file (200), as nginx and Apache do, so a request cannot make the
gateway open a read per tiny range.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

MAX_RANGES = 16
"""Specs a `Range` header may list before it is ignored (the whole file is sent instead)."""
_SPEC = re.compile(r"(\d*)-(\d*)")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int
    """Inclusive, as in `Content-Range`."""

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class Unsatisfiable(Exception):
    """A `Range` no byte of the file satisfies (HTTP 416)."""


def parse_ranges(header: str, size: int) -> list[ByteRange] | None:
    """The ranges a `Range` header asks for within `size` bytes, coalesced (see the module's docstring);
    None for the whole file (no header, a unit other than bytes, a malformed spec or too many specs);
    `Unsatisfiable` when no spec can be satisfied."""
    unit, _, specs = header.replace(" ", "").replace("\t", "").partition("=")
    if unit.lower() != "bytes" or not specs:
        return None
    listed = [spec for spec in specs.split(",") if spec]
    if not listed or len(listed) > MAX_RANGES:
        return None
    found: list[ByteRange] = []
    for spec in listed:
        matched = _SPEC.fullmatch(spec)
        if matched is None or not (matched.group(1) or matched.group(2)):
            return None  # not a range spec: the header is ignored (RFC 9110 §14.2)
        satisfiable = _satisfiable(matched.group(1), matched.group(2), size)
        if satisfiable is not None:
            found.append(satisfiable)
    if not found:
        raise Unsatisfiable(
            f"Range {header!r} cannot be satisfied: the file has {size} bytes (a range starts at 0 to {size - 1})"
        )
    return coalesce(found)


def _satisfiable(first: str, last: str, size: int) -> ByteRange | None:
    if not first:  # a suffix: the last n bytes
        length = int(last)
        return ByteRange(max(0, size - length), size - 1) if length and size else None
    start = int(first)
    if start >= size or (last and int(last) < start):
        return None
    return ByteRange(start, min(int(last), size - 1) if last else size - 1)


def coalesce(ranges: Sequence[ByteRange]) -> list[ByteRange]:
    """`ranges` with those that overlap or touch merged into one; in the order given when none do, else
    in ascending order (a client asking for the same bytes twice gets them once)."""
    ordered = sorted(ranges, key=lambda each: each.start)
    merged: list[ByteRange] = []
    for each in ordered:
        if merged and each.start <= merged[-1].end + 1:
            merged[-1] = ByteRange(merged[-1].start, max(merged[-1].end, each.end))
        else:
            merged.append(each)
    return list(ranges) if len(merged) == len(ranges) else merged


@dataclass(frozen=True)
class Multipart:
    """The framing of a `multipart/byteranges` body of `ranges` of a `size`-byte file of `media_type`:
    each part's head (boundary, `Content-Type`, `Content-Range`) goes before its bytes, `closing` after
    the last."""

    ranges: Sequence[ByteRange]
    size: int
    media_type: str
    boundary: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    def heads(self) -> Iterator[tuple[bytes, ByteRange]]:
        """Each part's head, with the range whose bytes follow it."""
        for index, each in enumerate(self.ranges):
            lead = "" if index == 0 else "\r\n"
            head = (
                f"{lead}--{self.boundary}\r\nContent-Type: {self.media_type}\r\n"
                f"Content-Range: {each.content_range(self.size)}\r\n\r\n"
            )
            yield head.encode("latin-1"), each

    @property
    def closing(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode("latin-1")

    @property
    def content_length(self) -> int:
        """The body's length in bytes: the heads, the parts' bytes and the closing delimiter."""
        return sum(len(head) + each.length for head, each in self.heads()) + len(self.closing)
