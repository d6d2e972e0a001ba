"""The object store backends against real storage: a temp directory and an in-process S3 server (moto).

Every behavioural test runs once per backend, so the local and S3 stores are held to one contract.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from moto.server import ThreadedMotoServer

import atelier.runtime.objectstore as objectstore
from atelier.errors import FailedPrecondition, Internal, InvalidArgument, NotFound, Unavailable
from atelier.runtime.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore, open_object_store

pytestmark = pytest.mark.timeout(60)

ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret"
DATA = bytes(range(256)) * 4 + b"tail"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """`host:port` of an S3-protocol server running in a thread for the whole session."""
    # werkzeug logs every request at INFO; that is noise in a failing test's output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


def _unique_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store of each backend."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return S3ObjectStore(endpoint, ACCESS_KEY, SECRET_KEY, _unique_bucket())


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    """A fresh local store, for tests of how it lays files out on disk."""
    return LocalObjectStore(tmp_path / "objects")


# --- the shared contract ---------------------------------------------------------------------


def test_put_get_roundtrip(store: ObjectStore) -> None:
    store.put("packs/ab/abcd", DATA)
    store.put("empty", b"")

    assert store.get("packs/ab/abcd") == DATA
    assert store.get("empty") == b""


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        pytest.param(0, None, DATA, id="whole"),
        pytest.param(10, None, DATA[10:], id="offset-to-end"),
        pytest.param(0, 7, DATA[:7], id="head"),
        pytest.param(100, 50, DATA[100:150], id="middle"),
        pytest.param(len(DATA) - 4, 4, b"tail", id="exact-tail"),
        pytest.param(len(DATA) - 2, 10, b"il", id="length-past-end"),
        pytest.param(len(DATA), None, b"", id="offset-at-end"),
        pytest.param(len(DATA) + 5, 3, b"", id="offset-past-end"),
        pytest.param(3, 0, b"", id="zero-length"),
    ],
)
def test_ranged_get(store: ObjectStore, offset: int, length: int | None, expected: bytes) -> None:
    store.put("obj", DATA)

    assert store.get("obj", offset, length) == expected


def test_ranged_get_of_empty_object(store: ObjectStore) -> None:
    store.put("empty", b"")

    assert store.get("empty", 0, 10) == b""
    assert store.get("empty", 5) == b""


@pytest.mark.parametrize(("offset", "length"), [(-1, None), (0, -1)])
def test_negative_range_is_invalid(store: ObjectStore, offset: int, length: int | None) -> None:
    store.put("obj", DATA)

    with pytest.raises(InvalidArgument, match="'obj'"):
        store.get("obj", offset, length)


def test_overwrite_replaces_whole_object(store: ObjectStore) -> None:
    store.put("obj", b"a much longer first version")
    store.put("obj", b"short")

    assert store.get("obj") == b"short"
    assert list(store.list()) == [("obj", 5)]


@pytest.mark.parametrize(("offset", "length"), [(0, None), (2, 3), (0, 0)])
def test_get_missing_is_not_found(store: ObjectStore, offset: int, length: int | None) -> None:
    store.put("packs/other", b"x")

    with pytest.raises(NotFound, match="packs/missing"):
        store.get("packs/missing", offset, length)


def test_get_of_key_prefix_is_not_found(store: ObjectStore) -> None:
    store.put("packs/ab/abcd", b"x")

    with pytest.raises(NotFound):
        store.get("packs/ab")
    assert not store.exists("packs/ab")


def test_delete(store: ObjectStore) -> None:
    store.put("packs/ab/abcd", b"x")
    store.put("packs/ab/abce", b"y")

    store.delete("packs/ab/abcd")

    assert not store.exists("packs/ab/abcd")
    with pytest.raises(NotFound):
        store.get("packs/ab/abcd")
    assert list(store.list()) == [("packs/ab/abce", 1)]


def test_delete_missing_is_ok(store: ObjectStore) -> None:
    store.delete("never/written")
    store.put("once", b"x")
    store.delete("once")
    store.delete("once")

    assert list(store.list()) == []


def test_exists(store: ObjectStore) -> None:
    assert not store.exists("packs/ab/abcd")

    store.put("packs/ab/abcd", b"")

    assert store.exists("packs/ab/abcd")
    assert not store.exists("packs/ab/abc")


def test_list_in_key_order_with_sizes(store: ObjectStore) -> None:
    # Written out of order; `a-b` sorts before `a/x` because `-` < `/`, which a naive
    # directory walk gets wrong.
    objects = {
        "packs/ab/2": b"22",
        "packs/ab1/z": b"z",
        "packs/ab/1": b"1",
        "packs/b": b"bbbb",
        "packs-x": b"xxx",
        "a/x": b"",
        "a-b": b"ab",
        "other": b"o" * 10,
    }
    for key, data in objects.items():
        store.put(key, data)

    assert list(store.list()) == sorted((key, len(data)) for key, data in objects.items())
    assert list(store.list("packs/")) == [
        ("packs/ab/1", 1),
        ("packs/ab/2", 2),
        ("packs/ab1/z", 1),
        ("packs/b", 4),
    ]
    assert list(store.list("packs/ab")) == [("packs/ab/1", 1), ("packs/ab/2", 2), ("packs/ab1/z", 1)]
    assert list(store.list("packs/ab/")) == [("packs/ab/1", 1), ("packs/ab/2", 2)]
    assert list(store.list("packs")) == [
        ("packs-x", 3),
        ("packs/ab/1", 1),
        ("packs/ab/2", 2),
        ("packs/ab1/z", 1),
        ("packs/b", 4),
    ]
    assert list(store.list("packs/b")) == [("packs/b", 4)]
    assert list(store.list("nothing/")) == []
    assert list(store.list("nothing/deeper/")) == []


def test_list_of_empty_store(store: ObjectStore) -> None:
    assert list(store.list()) == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs/key",
        "../escape",
        "packs/../../escape",
        "packs/..",
        "packs//ab",
        "packs/ab/",
        "./packs",
        "packs\\ab",
        "nul\x00byte",
        ".tmp-123",
        "packs/.tmp-123",
    ],
)
def test_invalid_keys_are_rejected(store: ObjectStore, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="object key") as caught:
            call()
        assert repr(key) in str(caught.value)


def test_list_with_unreachable_prefix_is_empty(store: ObjectStore) -> None:
    store.put("packs/ab", b"x")

    assert list(store.list("../")) == []
    assert list(store.list("/packs")) == []


# --- local store: layout, atomicity and durability ------------------------------------------


def test_local_layout(local_store: LocalObjectStore) -> None:
    local_store.put("packs/ab/abcd", DATA)

    assert (local_store.root / "packs" / "ab" / "abcd").read_bytes() == DATA


def test_local_leftover_temp_files_are_invisible(local_store: LocalObjectStore) -> None:
    # What a crash between creating the temp file and renaming it leaves behind.
    local_store.put("packs/ab/abcd", b"committed")
    (local_store.root / "packs" / "ab" / ".tmp-0123abcd").write_bytes(b"half-written")
    (local_store.root / ".tmp-deadbeef").write_bytes(b"half-written")

    assert list(local_store.list()) == [("packs/ab/abcd", 9)]
    assert list(local_store.list("packs/ab/.tmp")) == []
    assert local_store.get("packs/ab/abcd") == b"committed"
    with pytest.raises(InvalidArgument):
        local_store.exists("packs/ab/.tmp-0123abcd")
    with pytest.raises(InvalidArgument):
        local_store.get("packs/ab/.tmp-0123abcd")


def test_local_failed_put_keeps_old_object_and_cleans_up(
    local_store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_store.put("packs/ab/abcd", b"old")

    def crash(src: Any, dst: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Internal, match="Input/output error"):
        local_store.put("packs/ab/abcd", b"new")
    monkeypatch.undo()

    assert local_store.get("packs/ab/abcd") == b"old"
    assert sorted(p.name for p in (local_store.root / "packs" / "ab").iterdir()) == ["abcd"]


def test_local_put_syncs_file_and_directory(local_store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    local_store.put("packs/ab/abcd", b"x")

    directory = str(local_store.root / "packs" / "ab")
    assert any(Path(path).name.startswith(".tmp-") for path in synced), synced
    assert directory in synced
    # The new directories' own entries are synced in their parents, too.
    assert str(local_store.root) in synced


def test_local_key_clashing_with_prefix_is_rejected(local_store: LocalObjectStore) -> None:
    local_store.put("packs/ab", b"x")

    with pytest.raises(FailedPrecondition, match="packs/ab/cd"):
        local_store.put("packs/ab/cd", b"y")
    local_store.put("packs/xy/cd", b"z")
    with pytest.raises(FailedPrecondition, match="'packs/xy'"):
        local_store.put("packs/xy", b"y")

    assert local_store.get("packs/ab") == b"x"


# --- S3 store: bucket handling, prefixes, failures ------------------------------------------


def test_s3_reuses_existing_bucket(s3_endpoint: str) -> None:
    bucket = _unique_bucket()
    S3ObjectStore(s3_endpoint, ACCESS_KEY, SECRET_KEY, bucket).put("k", b"v")

    again = S3ObjectStore(s3_endpoint, ACCESS_KEY, SECRET_KEY, bucket)

    assert again.get("k") == b"v"


def test_s3_prefixes_share_a_bucket(s3_endpoint: str) -> None:
    bucket = _unique_bucket()
    team_a = S3ObjectStore(s3_endpoint, ACCESS_KEY, SECRET_KEY, bucket, prefix="team-a")
    team_b = S3ObjectStore(s3_endpoint, ACCESS_KEY, SECRET_KEY, bucket, prefix="team-b/")
    whole = S3ObjectStore(s3_endpoint, ACCESS_KEY, SECRET_KEY, bucket)

    team_a.put("packs/1", b"a")
    team_b.put("packs/1", b"bb")

    assert team_a.get("packs/1") == b"a"
    assert list(team_a.list()) == [("packs/1", 1)]
    assert list(team_b.list("packs/")) == [("packs/1", 2)]
    assert list(whole.list()) == [("team-a/packs/1", 1), ("team-b/packs/1", 2)]
    team_a.delete("packs/1")
    assert team_b.exists("packs/1")


def test_s3_invalid_bucket_name(s3_endpoint: str) -> None:
    with pytest.raises(InvalidArgument, match="Not_A_Bucket"):
        S3ObjectStore(s3_endpoint, ACCESS_KEY, SECRET_KEY, "Not_A_Bucket")


def test_s3_invalid_prefix(s3_endpoint: str) -> None:
    with pytest.raises(InvalidArgument, match="prefix"):
        S3ObjectStore(s3_endpoint, ACCESS_KEY, SECRET_KEY, _unique_bucket(), prefix="a/../b")


def _unused_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_s3_unreachable_endpoint_is_unavailable() -> None:
    endpoint = f"127.0.0.1:{_unused_loopback_port()}"
    # No retries and a short timeout: the default client retries for a long while.
    http = urllib3.PoolManager(retries=urllib3.Retry(total=0), timeout=urllib3.Timeout(connect=2.0, read=2.0))

    started = time.monotonic()
    with pytest.raises(Unavailable, match=endpoint) as caught:
        S3ObjectStore(endpoint, ACCESS_KEY, SECRET_KEY, _unique_bucket(), http_client=http)

    assert time.monotonic() - started < 10
    assert isinstance(caught.value.__cause__, urllib3.exceptions.HTTPError)


def test_s3_server_going_away_is_unavailable() -> None:
    # A server of its own, so stopping it leaves the session's server alone.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"{host}:{port}"
    http = urllib3.PoolManager(retries=urllib3.Retry(total=0), timeout=urllib3.Timeout(connect=2.0, read=2.0))
    s3 = S3ObjectStore(endpoint, ACCESS_KEY, SECRET_KEY, _unique_bucket(), http_client=http)
    s3.put("k", b"v")
    server.stop()
    http.clear()  # drop kept-alive connections so every call has to connect afresh

    calls: list[Callable[[], object]] = [
        lambda: s3.put("k", b"v"),
        lambda: s3.get("k"),
        lambda: s3.get("k", 0, 0),
        lambda: s3.exists("k"),
        lambda: s3.delete("k"),
        lambda: list(s3.list()),
    ]
    for call in calls:
        with pytest.raises(Unavailable, match=endpoint):
            call()


# --- open_object_store ----------------------------------------------------------------------


def test_open_local_path(tmp_path: Path) -> None:
    store = open_object_store(str(tmp_path / "plain"))

    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "plain"
    store.put("k", b"v")
    assert (tmp_path / "plain" / "k").read_bytes() == b"v"


@pytest.mark.parametrize("form", ["file://{path}", "file://localhost{path}"])
def test_open_file_url(tmp_path: Path, form: str) -> None:
    target = tmp_path / "with space"
    store = open_object_store(form.format(path=str(target).replace(" ", "%20")))

    assert isinstance(store, LocalObjectStore)
    assert store.root == target


def test_open_s3_url_against_server(s3_endpoint: str) -> None:
    bucket = _unique_bucket()
    url = f"s3://{ACCESS_KEY}:{SECRET_KEY}@{s3_endpoint}/{bucket}/lab/packs?secure=false&region=us-east-1"

    store = open_object_store(url)
    store.put("k", b"v")

    assert isinstance(store, S3ObjectStore)
    assert (store.endpoint, store.bucket, store.prefix) == (s3_endpoint, bucket, "lab/packs/")
    assert list(S3ObjectStore(s3_endpoint, ACCESS_KEY, SECRET_KEY, bucket).list()) == [("lab/packs/k", 1)]


class _RecordingS3Store:
    """Stands in for S3ObjectStore to see exactly what the URL parser passes it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


@pytest.mark.parametrize(
    ("url", "args", "kwargs"),
    [
        pytest.param(
            "s3://AK:SK@minio:9000/bucket",
            ("minio:9000", "AK", "SK", "bucket"),
            {"secure": False, "region": None, "prefix": ""},
            id="minimal",
        ),
        pytest.param(
            "s3://AK%2Fx:s%40cr%2Fet%3A@s3.example.org/data/a/b%20c?secure=true&region=eu-west-1",
            ("s3.example.org", "AK/x", "s@cr/et:", "data"),
            {"secure": True, "region": "eu-west-1", "prefix": "a/b c"},
            id="encoded-credentials-prefix-options",
        ),
        pytest.param(
            "s3://AK:SK@10.0.0.5:9000/bucket/?secure=FALSE",
            ("10.0.0.5:9000", "AK", "SK", "bucket"),
            {"secure": False, "region": None, "prefix": ""},
            id="trailing-slash",
        ),
    ],
)
def test_open_s3_url_parsing(
    monkeypatch: pytest.MonkeyPatch, url: str, args: tuple[str, ...], kwargs: dict[str, object]
) -> None:
    monkeypatch.setattr(objectstore, "S3ObjectStore", _RecordingS3Store)

    store = open_object_store(url)

    assert isinstance(store, _RecordingS3Store)
    assert (store.args, store.kwargs) == (args, kwargs)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ftp://host/bucket", "scheme 'ftp'"),
        ("gs://bucket/x", "scheme 'gs'"),
        ("file://remotehost/data", "host"),
        ("file:///data?x=1", "query"),
        ("s3://minio:9000/bucket", "credentials"),
        ("s3://AK@minio:9000/bucket", "credentials"),
        ("s3://AK:@minio:9000/bucket", "credentials"),
        ("s3://AK:SK@/bucket", "host"),
        ("s3://AK:SK@:9000/bucket", "host"),
        ("s3://AK:SK@minio:notaport/bucket", "port"),
        ("s3://AK:SK@minio:9000", "bucket"),
        ("s3://AK:SK@minio:9000/", "bucket"),
        ("s3://AK:SK@minio:9000/bucket?secure=maybe", "secure"),
        ("s3://AK:SK@minio:9000/bucket?colour=blue", "colour"),
        ("s3://AK:SK@minio:9000/bucket?secure=true&secure=false", "more than once"),
        ("s3://AK:SK@minio:9000/bucket#frag", "fragment"),
    ],
)
def test_open_bad_url(url: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_object_store(url)

    message = str(caught.value)
    assert reason in message
    assert repr(url.replace("AK:SK@", "AK:***@")) in message
    assert "s3://ACCESS:SECRET@host" in message
    assert "file:///" in message


def test_open_bad_url_hides_secret() -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_object_store("s3://AK:topsecret@minio:9000/bucket?colour=blue")

    assert "topsecret" not in str(caught.value)
    assert "s3://AK:***@minio:9000/bucket?colour=blue" in str(caught.value)
