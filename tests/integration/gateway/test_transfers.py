"""Bytes through REST: client-streaming uploads (NDJSON and length-delimited protobuf) and raw file
downloads with HTTP Range, against the real data service."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from atelier.data.v1 import data_service_pb2 as rpc
from tests.integration.gateway.conftest import Stack
from tests.integration.gateway.test_rest import error_of, push_digits

FILE_BYTES = 5 * 1024 * 1024 + 12345


def delimited(messages: list[rpc.UploadChunksRequest]) -> Iterator[bytes]:
    """Each message preceded by its length as a varint (protobuf's writeDelimitedTo)."""
    for message in messages:
        data = message.SerializeToString()
        length, head = len(data), bytearray()
        while True:
            byte = length & 0x7F
            length >>= 7
            head.append(byte | (0x80 if length else 0))
            if not length:
                break
        yield bytes(head)
        # In small pieces, so that frames straddle the pieces the gateway reads.
        for start in range(0, len(data), 7001):
            yield data[start : start + 7001]


def chunk(data: bytes) -> rpc.Chunk:
    return rpc.Chunk(digest=blake3.blake3(data).digest(), data=data)


def read_chunks(stack: Stack, version: str, digests: list[bytes]) -> dict[bytes, bytes]:
    body = {"digests": [base64.b64encode(d).decode() for d in digests]}
    response = stack.rest.post(f"/v1/{version}:readChunks", json=body)
    assert response.status_code == 200, response.text
    found: dict[bytes, bytes] = {}
    for line in response.text.splitlines():
        for each in json.loads(line)["result"].get("chunks", []):
            found[base64.b64decode(each["digest"])] = base64.b64decode(each["data"])
    return found


def test_chunks_pushed_as_protobuf_frames_read_back(stack: Stack, tmp_path: Path) -> None:
    version = push_digits(stack, tmp_path).name
    blobs = [os.urandom(300_000 + i) for i in range(4)]
    messages = [rpc.UploadChunksRequest(chunks=[chunk(blob)]) for blob in blobs[:3]]
    pack = rpc.ChunkPack(
        digests=[blake3.blake3(blobs[3]).digest()], sizes=[len(blobs[3])], data=blobs[3]
    )  # the packed form in the same stream
    messages.append(rpc.UploadChunksRequest(pack=pack))
    response = stack.rest.post(
        "/v1/projects/lab/chunks:upload",
        content=delimited(messages),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"receivedChunks": "4", "storedChunks": "4", "storedBytes": str(sum(map(len, blobs)))}
    digests = [blake3.blake3(blob).digest() for blob in blobs]
    assert stack.data.find_missing("lab", digests) == []
    # Stored, but part of no version: not readable by their digests alone.
    refused = stack.rest.post(f"/v1/{version}:readChunks", json={"digests": [base64.b64encode(digests[0]).decode()]})
    assert refused.status_code == 400
    assert "not chunks of lab/digits@v1" in refused.json()["error"]["message"]
    own = [c.digest for f in stack.data.list_files(version, full=True) for c in f.chunks]
    read = read_chunks(stack, version, own)
    assert sorted(read) == sorted(set(own))
    assert all(blake3.blake3(data).digest() == key for key, data in read.items())


def test_chunks_pushed_as_ndjson_are_stored_once(stack: Stack, tmp_path: Path) -> None:
    stack.data.ensure_project("lab")
    blobs = [b"first chunk", b"second chunk"]

    def lines() -> Iterator[bytes]:
        for blob in [*blobs, blobs[0]]:  # the repeat is received, not stored again
            digest = base64.b64encode(blake3.blake3(blob).digest()).decode()
            yield f'{{"chunks": [{{"digest": "{digest}", "data": "{base64.b64encode(blob).decode()}"}}]}}\n'.encode()

    response = stack.rest.post(
        "/v1/projects/lab/chunks:upload", content=lines(), headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"receivedChunks": "3", "storedChunks": "2", "storedBytes": str(sum(map(len, blobs)))}
    digests = [blake3.blake3(blob).digest() for blob in blobs]
    assert stack.data.find_missing("lab", digests) == []


def test_a_bad_upload_is_a_400_naming_the_frame_and_the_service_refusal_keeps_its_status(stack: Stack) -> None:
    stack.data.ensure_project("lab")
    upload = "/v1/projects/lab/chunks:upload"
    bad_line = stack.rest.post(upload, content=b'{"chunks": []}\n{"chunks": 7}\n')
    assert "line 2" in error_of(bad_line, 400, "INVALID_ARGUMENT")["message"]
    cut = stack.rest.post(upload, content=b"\x10abc", headers={"Content-Type": "application/x-protobuf"})
    assert "ends inside frame 1" in error_of(cut, 400, "INVALID_ARGUMENT")["message"]
    framing = stack.rest.post(upload, content=b"x", headers={"Content-Type": "text/plain"})
    assert "application/x-protobuf" in error_of(framing, 400, "INVALID_ARGUMENT")["message"]
    wrong_digest = rpc.UploadChunksRequest(chunks=[rpc.Chunk(digest=b"\x00" * 32, data=b"data")])
    refused = stack.rest.post(
        upload, content=delimited([wrong_digest]), headers={"Content-Type": "application/x-protobuf"}
    )
    assert "do not match their digest" in error_of(refused, 400, "INVALID_ARGUMENT")["message"]
    missing = stack.rest.post("/v1/projects/nowhere/chunks:upload", content=b'{"chunks": []}\n')
    error_of(missing, 404, "NOT_FOUND")
    empty = stack.rest.post("/v1/projects/nowhere/chunks:upload", content=b"")  # the path alone still counts
    error_of(empty, 404, "NOT_FOUND")
    assert stack.rest.post(upload, content=b"").json() == {}  # nothing sent, nothing stored


@pytest.fixture
def big_file(stack: Stack, tmp_path: Path) -> tuple[str, bytes]:
    from atelier.datasets.push import push
    from atelier.names import parse_dataset_ref
    from tests.integration.data.helpers import write_tree

    data = os.urandom(FILE_BYTES)
    write_tree(tmp_path / "big", {"weights.bin": data, "empty.txt": b""})
    version = push(stack.data, tmp_path / "big", parse_dataset_ref("big", "lab")).version
    return f"/v1/{version.name}:readFile", data


def get(stack: Stack, url: str, path: str = "weights.bin", **headers: str) -> Any:
    return stack.rest.get(url, params={"path": path}, headers=headers)


def test_a_file_downloads_as_raw_bytes(stack: Stack, big_file: tuple[str, bytes]) -> None:
    url, data = big_file
    whole = get(stack, url, Accept="application/octet-stream")
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(FILE_BYTES)
    assert whole.content == data
    media = stack.rest.get(url, params={"path": "weights.bin", "alt": "media", "offset": "100"})
    assert media.content == data[100:]
    assert get(stack, url, "empty.txt", Accept="application/octet-stream").content == b""
    ndjson = get(stack, url, "empty.txt")  # without asking for bytes: the NDJSON stream, as before
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1048570-3145727", 1048570, 3145727),  # across chunk boundaries
        ("bytes=5000000-", 5000000, FILE_BYTES - 1),
        ("bytes=-4096", FILE_BYTES - 4096, FILE_BYTES - 1),
        (f"bytes=100-{FILE_BYTES * 2}", 100, FILE_BYTES - 1),  # clamped to the end
    ],
)
def test_a_range_answers_206_with_those_bytes(
    stack: Stack, big_file: tuple[str, bytes], header: str, start: int, end: int
) -> None:
    url, data = big_file
    part = get(stack, url, Range=header)
    assert part.status_code == 206, part.text
    assert part.headers["content-range"] == f"bytes {start}-{end}/{FILE_BYTES}"
    assert part.headers["content-length"] == str(end - start + 1)
    assert part.content == data[start : end + 1]


def test_an_unsatisfiable_range_is_a_416_and_a_missing_file_a_404(stack: Stack, big_file: tuple[str, bytes]) -> None:
    url, _ = big_file
    for header in (f"bytes={FILE_BYTES}-", "bytes=-0", "bytes=10-5"):
        refused = get(stack, url, Range=header)
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{FILE_BYTES}"
        assert header in refused.json()["error"]["message"]
    several = get(stack, url, Range=f"bytes={FILE_BYTES}-,-0,9-3")  # several, none in the file
    assert (several.status_code, several.headers["content-range"]) == (416, f"bytes */{FILE_BYTES}")
    error_of(get(stack, url, "nothing.bin", Range="bytes=0-1"), 404, "NOT_FOUND")


def test_the_files_digest_is_its_etag_and_head_answers_its_headers(stack: Stack, big_file: tuple[str, bytes]) -> None:
    url, data = big_file
    etag = f'"{blake3.blake3(data).hexdigest()}"'
    whole = get(stack, url, Accept="application/octet-stream")
    assert whole.headers["etag"] == etag
    head = stack.rest.head(url, params={"path": "weights.bin"})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(FILE_BYTES)
    assert (head.headers["etag"], head.headers["accept-ranges"]) == (etag, "bytes")
    part = stack.rest.head(url, params={"path": "weights.bin"}, headers={"Range": "bytes=-10"})
    assert (part.status_code, part.headers["content-length"]) == (206, "10")
    assert part.headers["content-range"] == f"bytes {FILE_BYTES - 10}-{FILE_BYTES - 1}/{FILE_BYTES}"
    assert stack.rest.head(url, params={"path": "nothing.bin"}).status_code == 404
    refused = stack.rest.put(url, params={"path": "weights.bin"})
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")


def test_if_none_match_and_if_range_follow_the_etag(stack: Stack, big_file: tuple[str, bytes]) -> None:
    url, data = big_file
    etag = f'"{blake3.blake3(data).hexdigest()}"'
    raw = {"Accept": "application/octet-stream"}  # the ETag is the raw file's, not the NDJSON stream's
    unchanged = get(stack, url, **raw, **{"If-None-Match": f'"other", W/{etag}'})
    assert (unchanged.status_code, unchanged.content, unchanged.headers["etag"]) == (304, b"", etag)
    assert get(stack, url, **raw, **{"If-None-Match": "*"}).status_code == 304
    changed = get(stack, url, **raw, **{"If-None-Match": '"other"'})
    assert (changed.status_code, len(changed.content)) == (200, FILE_BYTES)
    # Resuming: the rest of the file only while the ETag still names the same content.
    resumed = get(stack, url, Range="bytes=1000-", **{"If-Range": etag})
    assert (resumed.status_code, resumed.content) == (206, data[1000:])
    stale = get(stack, url, Range="bytes=1000-", **{"If-Range": '"an-older-file"'})
    assert (stale.status_code, stale.content) == (200, data)
    dated = get(stack, url, Range="bytes=1000-", **{"If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert (dated.status_code, len(dated.content)) == (200, FILE_BYTES)  # no dates kept: sent whole


def byteranges(response: Any) -> list[tuple[str, str, bytes]]:
    """The parts of a `multipart/byteranges` response (Content-Type, Content-Range, bytes), parsed by the
    standard library's MIME parser."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    assert parsed.get_content_type() == "multipart/byteranges"
    found = []
    for part in parsed.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((part.get_content_type(), str(part["Content-Range"]), payload))
    return found


def test_several_ranges_answer_206_as_multipart_byteranges(stack: Stack, big_file: tuple[str, bytes]) -> None:
    url, data = big_file
    header = f"bytes=0-9, 1048570-3145727, -100, {FILE_BYTES * 3}-"  # the last one is past the end: left out
    answer = get(stack, url, Range=header)
    assert answer.status_code == 206, answer.text
    assert answer.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert "content-range" not in answer.headers
    assert answer.headers["content-length"] == str(len(answer.content))
    wanted = [(0, 9), (1048570, 3145727), (FILE_BYTES - 100, FILE_BYTES - 1)]
    assert byteranges(answer) == [
        ("application/octet-stream", f"bytes {a}-{b}/{FILE_BYTES}", data[a : b + 1]) for a, b in wanted
    ]
    head = stack.rest.head(url, params={"path": "weights.bin"}, headers={"Range": header})
    assert (head.status_code, head.content) == (206, b"")
    assert head.headers["content-length"] == answer.headers["content-length"]
    assert head.headers["content-type"].startswith("multipart/byteranges; boundary=")


def test_overlapping_ranges_are_coalesced_and_too_many_get_the_whole_file(
    stack: Stack, big_file: tuple[str, bytes]
) -> None:
    url, data = big_file
    overlapping = get(stack, url, Range="bytes=500-999,0-99,50-199,200-299")
    assert byteranges(overlapping) == [
        ("application/octet-stream", f"bytes 0-299/{FILE_BYTES}", data[:300]),
        ("application/octet-stream", f"bytes 500-999/{FILE_BYTES}", data[500:1000]),
    ]
    into_one = get(stack, url, Range="bytes=0-99,100-199")  # touching: one range, no multipart
    assert (into_one.status_code, into_one.headers["content-range"]) == (206, f"bytes 0-199/{FILE_BYTES}")
    assert into_one.content == data[:200]
    many = ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(17))  # more than 16: ignored, as nginx does
    whole = get(stack, url, Range=f"bytes={many}")
    assert (whole.status_code, len(whole.content)) == (200, FILE_BYTES)


def test_several_ranges_follow_if_range(stack: Stack, big_file: tuple[str, bytes]) -> None:
    url, data = big_file
    etag = f'"{blake3.blake3(data).hexdigest()}"'
    header = "bytes=0-1,10-11"
    same = get(stack, url, Range=header, **{"If-Range": etag})
    assert [part[2] for part in byteranges(same)] == [data[0:2], data[10:12]]
    changed = get(stack, url, Range=header, **{"If-Range": '"an-older-file"'})
    assert (changed.status_code, changed.headers["content-type"]) == (200, "application/octet-stream")
    assert changed.content == data
