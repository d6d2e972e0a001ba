"""The S3 object store against an in-process S3 server (moto): bucket handling, prefixes, failures;
and `open_object_store`'s URL parsing (`s3://` URLs, and URLs neither store accepts).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from moto.server import ThreadedMotoServer

import atelier.runtime.objectstore as objectstore
from atelier.errors import InvalidArgument, Unavailable
from atelier.runtime.objectstore import S3ObjectStore, open_object_store
from tests.integration.objectstore.helpers import ACCESS_KEY, SECRET_KEY, _unique_bucket

pytestmark = pytest.mark.timeout(60)


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


# --- open_object_store: s3:// URLs and bad URLs ---------------------------------------------


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
