"""Pushing, pulling, logs, diffs and references against a real data service, on both databases."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from atelier.client import DataClient
from atelier.datasets.pull import pull
from atelier.datasets.push import push
from atelier.errors import InvalidArgument, NotFound
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import random_tree, read_tree, write_tree

REF = parse_dataset_ref("digits", "lab")


def test_push_then_pull_is_byte_identical(data_client: DataClient, tmp_path: Path) -> None:
    files = random_tree(tmp_path / "src")
    files["big/blob.bin"] = os.urandom(2_500_000)
    files["empty.txt"] = b""
    write_tree(tmp_path / "src", files)

    result = push(data_client, tmp_path / "src", REF, message="first")

    assert result.created
    assert result.version.name == "projects/lab/datasets/digits/versions/v1"
    assert result.version.file_count == len(files)
    assert result.version.total_size_bytes == sum(len(v) for v in files.values())
    assert result.version.author
    pulled = pull(data_client, parse_dataset_ref("digits@v1", "lab"), tmp_path / "out")
    assert pulled.fetched_files == len(files)
    assert read_tree(tmp_path / "out") == files


def test_unchanged_push_creates_nothing_and_sends_no_chunk(data_client: DataClient, tmp_path: Path) -> None:
    random_tree(tmp_path / "src")
    first = push(data_client, tmp_path / "src", REF)
    again = push(data_client, tmp_path / "src", REF)
    assert not again.created
    assert again.version.name == first.version.name
    assert again.sent_chunks == 0
    assert again.sent_bytes == 0
    assert len(list(data_client.list_versions(REF.dataset_name))) == 1


def test_edit_in_large_file_sends_only_changed_chunks(data_client: DataClient, tmp_path: Path) -> None:
    blob = bytearray(os.urandom(8 * 1024 * 1024))
    write_tree(tmp_path / "src", {"video.bin": bytes(blob)})
    push(data_client, tmp_path / "src", REF)
    blob[4_000_000:4_100_000] = os.urandom(100_000)
    write_tree(tmp_path / "src", {"video.bin": bytes(blob)})

    second = push(data_client, tmp_path / "src", REF)

    assert second.created
    assert second.sent_bytes < 0.1 * len(blob)
    pull(data_client, parse_dataset_ref("digits@v2", "lab"), tmp_path / "out")
    assert (tmp_path / "out" / "video.bin").read_bytes() == bytes(blob)


def test_log_diff_and_listing(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a.txt": b"a", "b/c.txt": b"c", "b/d.txt": b"d"})
    push(data_client, tmp_path / "src", REF, message="one")
    (tmp_path / "src" / "a.txt").unlink()
    write_tree(tmp_path / "src", {"b/c.txt": b"cc", "e.txt": b"e"})
    push(data_client, tmp_path / "src", REF, message="two")

    log = list(data_client.list_versions(REF.dataset_name, page_size=1))
    assert [v.message for v in log] == ["two", "one"]
    assert log[0].parents == ["projects/lab/datasets/digits/versions/v1"]
    diff = data_client.diff(log[0].name, log[1].name)
    assert [(c.path, c.kind, c.old_size_bytes, c.new_size_bytes) for c in diff.changes] == [
        ("a.txt", 2, 1, 0),
        ("b/c.txt", 3, 1, 2),
        ("e.txt", 1, 0, 1),
    ]
    listed = list(data_client.list_files("projects/lab/datasets/digits/versions/latest", prefix="b/"))
    assert [f.path for f in listed] == ["b/c.txt", "b/d.txt"]
    assert listed[0].media_type == "text/plain"


def test_list_files_paginates(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {f"f{i:04d}": b"x%d" % i for i in range(25)})
    push(data_client, tmp_path / "src", REF)
    from atelier.data.v1 import data_service_pb2 as rpc

    pages: list[list[str]] = []
    token = ""
    while True:
        page = data_client.stub.ListFiles(
            rpc.ListFilesRequest(name="projects/lab/datasets/digits/versions/v1", page_size=10, page_token=token)
        )
        pages.append([f.path for f in page.files])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == [f"f{i:04d}" for i in range(25)]


def test_list_files_names_the_views_it_knows(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a": b"1"})
    push(data_client, tmp_path / "src", REF)
    from atelier.data.v1 import data_service_pb2 as rpc

    request = rpc.ListFilesRequest(name="projects/lab/datasets/digits/versions/v1", view=7)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as raised:
        data_client.stub.ListFiles(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "view is 7; allowed: FILE_VIEW_BASIC, FILE_VIEW_FULL"


def test_references_resolve(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a": b"1"})
    v1 = push(data_client, tmp_path / "src", REF).version
    write_tree(tmp_path / "src", {"a": b"2"})
    v2 = push(data_client, tmp_path / "src", REF).version
    data_client.tag(REF.dataset_name, "golden", v1.name, author="ana")
    base = "projects/lab/datasets/digits/versions/"

    assert data_client.get_version(base + "latest").name == v2.name
    assert data_client.get_version(base + "v1").digest == v1.digest
    assert data_client.get_version(base + "golden").name == v1.name
    assert data_client.get_version(base + v1.digest[:10]).name == v1.name
    assert data_client.get_version(base + "golden").tags == ["golden"]
    with pytest.raises(NotFound, match="no version lab/digits@nope"):
        data_client.get_version(base + "nope")
    with pytest.raises(NotFound, match="v9"):
        data_client.get_version(base + "v9")
    with pytest.raises(NotFound, match="no version lab/digits@v99999999999999999999"):
        data_client.get_version(base + "v99999999999999999999")


def test_tags_move_with_history(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a": b"1"})
    push(data_client, tmp_path / "src", REF)
    write_tree(tmp_path / "src", {"a": b"2"})
    push(data_client, tmp_path / "src", REF)
    data_client.tag(REF.dataset_name, "prod", "v1", author="ana")
    moved = data_client.tag(REF.dataset_name, "prod", "v2", author="bo")

    assert moved.version.endswith("/versions/v2")
    events = data_client.tag_events(REF.dataset_name)
    assert [(e.author, e.previous_version.rsplit("/", 1)[-1], e.version.rsplit("/", 1)[-1]) for e in events] == [
        ("bo", "v1", "v2"),
        ("ana", "", "v1"),
    ]
    with pytest.raises(InvalidArgument, match="reserved"):
        data_client.tag(REF.dataset_name, "latest", "v1")


def test_pull_resumes_and_repairs(data_client: DataClient, tmp_path: Path) -> None:
    files = random_tree(tmp_path / "src", count=10)
    push(data_client, tmp_path / "src", REF)
    out = tmp_path / "out"
    write_tree(out, {"dir0/file000.bin": files["dir0/file000.bin"], "dir1/file001.bin": b"wrong"})

    result = pull(data_client, REF, out)

    assert result.fetched_files == 9
    assert read_tree(out) == files


def test_an_empty_directory_is_refused_before_anything_is_created(data_client: DataClient, tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)

    with pytest.raises(InvalidArgument, match="empty holds no files: nothing to push"):
        push(data_client, tmp_path / "empty", parse_dataset_ref("never", "lab"))

    with pytest.raises(NotFound):
        data_client.get_dataset("projects/lab/datasets/never")


def test_a_file_name_that_is_not_utf8_is_refused_naming_it(data_client: DataClient, tmp_path: Path) -> None:
    root = tmp_path / "odd"
    root.mkdir()
    (root / "fine").write_bytes(b"1")
    with open(os.path.join(os.fsencode(root), b"bad\xff"), "wb") as handle:
        handle.write(b"2")

    with pytest.raises(InvalidArgument, match=r"file name b'bad\\xff' is not UTF-8"):
        push(data_client, root, parse_dataset_ref("odd", "lab"))

    with pytest.raises(NotFound):
        data_client.get_dataset("projects/lab/datasets/odd")


def test_a_directory_in_the_way_of_a_file_is_named(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a.txt": b"1", "b.txt": b"2"})
    push(data_client, tmp_path / "src", REF)
    (tmp_path / "out" / "a.txt").mkdir(parents=True)

    with pytest.raises(InvalidArgument, match="a.txt is a directory where the version has the file 'a.txt'"):
        pull(data_client, REF, tmp_path / "out")


def test_pull_into_a_file_is_refused_before_anything_is_written(data_client: DataClient, tmp_path: Path) -> None:
    random_tree(tmp_path / "src", count=2)
    push(data_client, tmp_path / "src", REF)
    (tmp_path / "taken").write_bytes(b"mine")

    with pytest.raises(InvalidArgument, match="taken exists and is not a directory"):
        pull(data_client, REF, tmp_path / "taken")

    assert (tmp_path / "taken").read_bytes() == b"mine"


def test_open_file_streams_and_seeks(data_client: DataClient, tmp_path: Path) -> None:
    from atelier.datasets.files import open_file

    blob = os.urandom(1_500_000)
    write_tree(tmp_path / "src", {"shard-0.bin": blob, "labels.csv": b"a,1\nb,2\n"})
    push(data_client, tmp_path / "src", REF)
    with open_file(data_client, REF, "shard-0.bin", buffer_size=64 * 1024) as handle:
        assert handle.read(10) == blob[:10]
        handle.seek(1_000_000)
        assert handle.read(100_000) == blob[1_000_000:1_100_000]
        handle.seek(-5, os.SEEK_END)
        assert handle.read() == blob[-5:]
    with open_file(data_client, REF, "labels.csv") as handle:
        assert handle.readlines() == [b"a,1\n", b"b,2\n"]
    with pytest.raises(NotFound, match="no file 'missing.csv'"):
        open_file(data_client, REF, "missing.csv")
