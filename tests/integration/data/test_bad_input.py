"""Bad input is refused with the right code and a message naming the value; nothing is half-stored."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_status import rpc_status

from atelier.chunking import digest
from atelier.client import DataClient
from atelier.data.v1 import data_service_pb2 as rpc
from atelier.data.v1 import resources_pb2 as pb
from atelier.datasets.push import push
from atelier.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import commit_raw, write_tree


@pytest.fixture
def dataset(data_client: DataClient) -> str:
    data_client.ensure_dataset("lab", "ds")
    return "projects/lab/datasets/ds"


def versions(client: DataClient, dataset: str) -> int:
    return len(list(client.list_versions(dataset)))


@pytest.mark.parametrize(
    ("path", "problem"),
    [("../escape", "'..'"), ("/etc/passwd", "absolute"), ("", "empty path"), ("a//b", "empty segment")],
)
def test_bad_paths_are_refused_and_nothing_committed(
    data_client: DataClient, dataset: str, path: str, problem: str
) -> None:
    with pytest.raises(InvalidArgument, match=problem) as caught:
        commit_raw(data_client, "lab", "ds", [("ok.txt", b"1"), (path, b"2")] if path > "ok" else [(path, b"2")])
    assert caught.value.metadata.get("field") == "manifest.files.path"
    assert versions(data_client, dataset) == 0


def test_duplicate_paths_are_refused(data_client: DataClient, dataset: str) -> None:
    with pytest.raises(InvalidArgument, match="duplicate path 'a.txt'"):
        commit_raw(data_client, "lab", "ds", [("a.txt", b"1"), ("a.txt", b"2")])
    assert versions(data_client, dataset) == 0


@pytest.mark.parametrize("bad", ["Digits", "has space", "-lead", "x" * 70])
def test_bad_names_are_invalid_argument_naming_the_value(data_client: DataClient, bad: str) -> None:
    with pytest.raises(InvalidArgument, match=f"invalid dataset id '{bad}'.*a-z0-9"):
        data_client.create_dataset("lab", bad)


def test_unknown_references_are_not_found(data_client: DataClient, dataset: str) -> None:
    with pytest.raises(NotFound, match="has no versions yet"):
        data_client.get_version(f"{dataset}/versions/latest")
    with pytest.raises(NotFound, match="dataset 'nope' not found in project 'lab'"):
        data_client.get_version("projects/lab/datasets/nope/versions/v1")
    with pytest.raises(NotFound, match="project 'ghost' not found"):
        data_client.get_dataset("projects/ghost/datasets/x")


def test_error_details_carry_error_info(data_client: DataClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        data_client.stub.GetProject(rpc.GetProjectRequest(name="projects/ghost"))
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    from google.rpc import error_details_pb2

    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (info.reason, info.domain, info.metadata["resource"]) == ("NOT_FOUND", "atelier.dev", "projects/ghost")


def _commit_manifest(client: DataClient, dataset: str, files: list[pb.FileEntry], data: bytes) -> pb.DatasetVersion:
    """Upload `data` as one chunk, then commit a hand-written manifest of `files`."""
    manifest = pb.Manifest(files=files)
    raw = manifest.SerializeToString(deterministic=True)
    client.upload("lab", [[(digest(raw), raw), (digest(data), data)]])
    request = rpc.CreateVersionRequest(
        parent=dataset,
        version=pb.DatasetVersion(author="tester"),
        manifest_chunks=[pb.ChunkRef(digest=digest(raw), size_bytes=len(raw))],
        manifest_digest=digest(raw).hex(),
    )
    return client.create_version(request)


def test_a_manifest_must_agree_with_the_stored_chunks(data_client: DataClient, dataset: str) -> None:
    data = b"fourteen bytes"
    chunk = digest(data)

    def entry(size: int, file_digest: str = chunk.hex(), path: str = "f") -> pb.FileEntry:
        return pb.FileEntry(
            path=path, size_bytes=size, digest=file_digest, chunks=[pb.ChunkRef(digest=chunk, size_bytes=size)]
        )

    with pytest.raises(InvalidArgument, match="says 3 bytes, the chunk has 14"):
        _commit_manifest(data_client, dataset, [entry(3)], data)
    with pytest.raises(InvalidArgument, match="says 1000 bytes, the chunk has 14"):
        _commit_manifest(data_client, dataset, [entry(1000)], data)
    with pytest.raises(InvalidArgument, match="a file of one chunk has that chunk's digest"):
        _commit_manifest(data_client, dataset, [entry(14, "0" * 64)], data)
    with pytest.raises(InvalidArgument, match="a chunk has one size"):
        _commit_manifest(data_client, dataset, [entry(14, path="a"), entry(13, path="b")], data)
    assert versions(data_client, dataset) == 0
    assert _commit_manifest(data_client, dataset, [entry(14)], data).name.endswith("/v1")


def test_an_error_quoting_an_oversized_value_still_arrives(data_client: DataClient) -> None:
    huge = "projects/" + "A" * 20_000
    with pytest.raises(InvalidArgument, match=r"invalid name 'projects/AAAA.*\(20\d\d\d characters\)") as caught:
        data_client.get_project(huge)
    assert len(caught.value.message) <= 1024


def test_chunk_bytes_that_do_not_match_their_digest(data_client: DataClient, dataset: str) -> None:
    with pytest.raises(InvalidArgument, match="chunk bytes do not match their digest"):
        data_client.upload("lab", [[(digest(b"expected"), b"something else")]])
    assert data_client.find_missing("lab", [digest(b"expected"), digest(b"something else")]) == [
        digest(b"expected"),
        digest(b"something else"),
    ]


def test_one_bad_chunk_in_a_pack_stores_none_of_it(data_client: DataClient, dataset: str) -> None:
    good = [(digest(bytes([i]) * 100), bytes([i]) * 100) for i in range(5)]
    bad = (digest(b"expected"), b"something else")
    with pytest.raises(InvalidArgument, match=f"do not match their digest {bad[0].hex()}"):
        data_client.upload("lab", [[*good[:3], bad, *good[3:]]])
    wanted = [d for d, _ in good]
    assert data_client.find_missing("lab", wanted) == wanted


def _raw_pack(client: DataClient, pack: rpc.ChunkPack) -> None:
    client.call(client.stub.UploadChunks, iter([rpc.UploadChunksRequest(parent="projects/lab", pack=pack)]))


def test_pack_sizes_must_add_up_to_its_data(data_client: DataClient, dataset: str) -> None:
    one, two = b"first chunk", b"second"
    digests = [digest(one), digest(two)]
    for sizes in ([len(one)], [len(one), len(two) + 1], [0, len(one) + len(two)]):
        with pytest.raises(InvalidArgument, match="one positive size per digest"):
            _raw_pack(data_client, rpc.ChunkPack(digests=digests, sizes=sizes, data=one + two))
    assert data_client.find_missing("lab", digests) == digests


def test_pack_digest_of_wrong_length(data_client: DataClient, dataset: str) -> None:
    with pytest.raises(InvalidArgument, match="must be 32 bytes"):
        _raw_pack(data_client, rpc.ChunkPack(digests=[b"short"], sizes=[3], data=b"abc"))


def test_commit_with_missing_chunks_is_failed_precondition(data_client: DataClient, dataset: str) -> None:
    with pytest.raises(FailedPrecondition, match="not stored"):
        commit_raw(data_client, "lab", "ds", [("a", b"never uploaded")], upload=False)
    assert versions(data_client, dataset) == 0


def test_manifest_digest_mismatch(data_client: DataClient, dataset: str) -> None:
    request = rpc.CreateVersionRequest(
        parent=dataset,
        version=pb.DatasetVersion(),
        manifest_chunks=[pb.ChunkRef(digest=digest(b"m"), size_bytes=1)],
        manifest_digest="0" * 64,
    )
    data_client.upload("lab", [[(digest(b"m"), b"m")]])
    with pytest.raises(InvalidArgument, match="does not match the uploaded manifest"):
        data_client.create_version(request)


def test_oversized_message_is_resource_exhausted(data_client: DataClient) -> None:
    big = b"x" * (9 * 1024 * 1024)
    with pytest.raises(ResourceExhausted):
        data_client.upload("lab", [[(digest(big), big)]])


def test_stale_parent_is_aborted_unless_rebased(data_client: DataClient, dataset: str) -> None:
    v1 = commit_raw(data_client, "lab", "ds", [("a", b"1"), ("b", b"1")])
    commit_raw(data_client, "lab", "ds", [("a", b"1"), ("b", b"2")], parent=v1.name)
    with pytest.raises(Aborted, match="based on v1, the newest is v2"):
        commit_raw(data_client, "lab", "ds", [("a", b"3"), ("b", b"1")], parent=v1.name)
    rebased = commit_raw(data_client, "lab", "ds", [("a", b"3"), ("b", b"1")], parent=v1.name, rebase=True)
    assert rebased.number == 3
    assert rebased.parents == [f"{dataset}/versions/v2"]
    files = {f.path: f.size_bytes for f in data_client.list_files(rebased.name)}
    assert files == {"a": 1, "b": 1}
    contents = {p: b"".join(data_client.read_file(rebased.name, p)) for p in files}
    assert contents == {"a": b"3", "b": b"2"}
    with pytest.raises(Aborted, match="both changed b"):
        commit_raw(data_client, "lab", "ds", [("a", b"1"), ("b", b"9")], parent=v1.name, rebase=True)


def test_quota_is_enforced_at_push(data_client: DataClient, tmp_path: Path) -> None:
    data_client.create_project("small")
    data_client.set_quota("projects/small", 10_000)
    write_tree(tmp_path / "src", {"a.bin": b"a" * 4000})
    push(data_client, tmp_path / "src", parse_dataset_ref("ds", "small"))
    write_tree(tmp_path / "src", {"b.bin": b"b" * 9000})
    with pytest.raises(ResourceExhausted, match="project 'small' quota exceeded"):
        push(data_client, tmp_path / "src", parse_dataset_ref("ds", "small"))
    assert versions(data_client, "projects/small/datasets/ds") == 1
    usage = data_client.usage("small").project
    assert usage.deduplicated_bytes < 10_000


def test_duplicate_creation_is_already_exists(data_client: DataClient, dataset: str) -> None:
    with pytest.raises(AlreadyExists, match="dataset 'ds' already exists"):
        data_client.create_dataset("lab", "ds")


def test_negative_page_size(data_client: DataClient, dataset: str) -> None:
    with pytest.raises(InvalidArgument, match="page_size must be >= 0"):
        data_client.call(data_client.stub.ListVersions, rpc.ListVersionsRequest(parent=dataset, page_size=-1))


def test_only_chunks_of_the_version_read_can_be_read(data_client: DataClient, dataset: str, tmp_path: Path) -> None:
    write_tree(tmp_path / "mine", {"a.txt": b"mine"})
    version = push(data_client, tmp_path / "mine", parse_dataset_ref(dataset, "lab")).version
    write_tree(tmp_path / "theirs", {"secret.txt": b"another project's bytes"})
    push(data_client, tmp_path / "theirs", parse_dataset_ref("other/elsewhere", "other"))
    theirs = digest(b"another project's bytes")
    mine = digest(b"mine")

    assert [c.data for c in data_client.read_chunks(version.name, [mine])] == [b"mine"]
    for foreign in (theirs, b"abc"):
        with pytest.raises(InvalidArgument, match="of the digests are not chunks of lab/ds@v1"):
            list(data_client.read_chunks(version.name, [mine, foreign]))


def test_gc_grace_periods_out_of_range_are_refused(data_client: DataClient) -> None:
    for seconds, nanos in [(2**62, 0), (-1, 0), (0, -5)]:
        request = rpc.GarbageCollectRequest(grace_period=duration_pb2.Duration(seconds=seconds, nanos=nanos))
        with pytest.raises(InvalidArgument, match="grace_period is .*: give 0 to 3153600000 seconds"):
            data_client.call(data_client.stub.GarbageCollect, request)


def test_metadata_that_is_not_json_is_refused(data_client: DataClient, dataset: str) -> None:
    data = b"x"
    raw = pb.Manifest(
        files=[
            pb.FileEntry(
                path="x",
                size_bytes=1,
                digest=digest(data).hex(),
                chunks=[pb.ChunkRef(digest=digest(data), size_bytes=1)],
            )
        ]
    ).SerializeToString(deterministic=True)
    data_client.upload("lab", [[(digest(raw), raw), (digest(data), data)]])
    version = pb.DatasetVersion(author="tester")
    version.metadata.update({"k": math.nan})
    request = rpc.CreateVersionRequest(
        parent=dataset,
        version=version,
        manifest_chunks=[pb.ChunkRef(digest=digest(raw), size_bytes=len(raw))],
        manifest_digest=digest(raw).hex(),
    )
    with pytest.raises(InvalidArgument, match="version.metadata cannot be stored as JSON"):
        data_client.create_version(request)
    assert versions(data_client, dataset) == 0


def test_moving_references_cannot_delete_or_shadow_versions(
    data_client: DataClient, dataset: str, tmp_path: Path
) -> None:
    write_tree(tmp_path / "src", {"a": b"1"})
    first = push(data_client, tmp_path / "src", parse_dataset_ref(dataset, "lab")).version
    write_tree(tmp_path / "src", {"a": b"2"})
    push(data_client, tmp_path / "src", parse_dataset_ref(dataset, "lab"))

    with pytest.raises(InvalidArgument, match="reads as a digest prefix"):
        data_client.tag(dataset, first.digest[:6], f"{dataset}/versions/v2", author="ana")
    for moving in ("latest", "golden"):
        with pytest.raises(InvalidArgument, match=f"delete a version by its number \\(vN\\), not '{moving}'"):
            data_client.delete_version(f"{dataset}/versions/{moving}")
    assert versions(data_client, dataset) == 2
