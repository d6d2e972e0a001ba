"""The contract both object store backends are held to: every test runs once on a temp directory
and once on the in-process S3 server (moto).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from atelier.errors import InvalidArgument, NotFound
from atelier.runtime.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore
from tests.integration.objectstore.helpers import ACCESS_KEY, DATA, SECRET_KEY, _unique_bucket

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store of each backend."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return S3ObjectStore(endpoint, ACCESS_KEY, SECRET_KEY, _unique_bucket())


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
