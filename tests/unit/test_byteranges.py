"""Parsing `Range` headers and framing `multipart/byteranges` bodies (RFC 9110 §14)."""

from __future__ import annotations

import email.parser
import email.policy

import pytest

from gateway.byteranges import MAX_RANGES, ByteRange, Multipart, Unsatisfiable, parse_ranges


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", [ByteRange(0, 9)]),
        ("bytes=90-", [ByteRange(90, 99)]),
        ("bytes=-5", [ByteRange(95, 99)]),
        ("bytes=-500", [ByteRange(0, 99)]),
        ("bytes=50-1000", [ByteRange(50, 99)]),
        ("bytes=20-29, 0-9", [ByteRange(20, 29), ByteRange(0, 9)]),  # the order asked for
        ("bytes=0-9,200-,-0,5-3,40-49", [ByteRange(0, 9), ByteRange(40, 49)]),  # unsatisfiable specs left out
        ("bytes=40-49,0-9,5-19,20-21", [ByteRange(0, 21), ByteRange(40, 49)]),  # overlapping and touching
        ("Bytes=0-0", [ByteRange(0, 0)]),
    ],
)
def test_ranges_within_the_file(header: str, expected: list[ByteRange]) -> None:
    assert parse_ranges(header, 100) == expected


@pytest.mark.parametrize(
    "header",
    ["", "items=0-9", "bytes=", "bytes=a-b", "bytes=-", "bytes=0-9,x", ",".join(["bytes=0-0"] * (MAX_RANGES + 1))],
)
def test_a_header_not_understood_or_with_too_many_ranges_means_the_whole_file(header: str) -> None:
    assert parse_ranges(header, 100) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=-0,9-3", 100), ("bytes=0-", 0)])
def test_no_satisfiable_range_is_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable, match=f"the file has {size} bytes"):
        parse_ranges(header, size)


def test_a_multipart_body_parses_back_and_its_length_is_known_before_it_is_sent() -> None:
    data = bytes(range(256)) * 4 + b"\r\n--not-a-boundary\r\n"
    ranges = [ByteRange(0, 9), ByteRange(1000, len(data) - 1)]
    parts = Multipart(ranges, len(data), "application/octet-stream")
    body = b"".join(head + data[each.start : each.end + 1] for head, each in parts.heads()) + parts.closing
    assert len(body) == parts.content_length
    head = f"Content-Type: {parts.content_type}\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert [(p["Content-Range"], p.get_payload(decode=True)) for p in parsed.iter_parts()] == [
        (f"bytes 0-9/{len(data)}", data[:10]),
        (f"bytes 1000-{len(data) - 1}/{len(data)}", data[1000:]),
    ]
    assert Multipart(ranges, 1, "x").boundary != parts.boundary
