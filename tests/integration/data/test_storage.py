"""Integrity, garbage collection, usage and deletion; the S3 backend end to end."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atelier.client import DataClient
from atelier.datasets.pull import pull
from atelier.datasets.push import push
from atelier.errors import DataLoss, FailedPrecondition
from atelier.names import parse_dataset_ref
from tests.integration.data.helpers import random_tree, read_tree, write_tree

REF = parse_dataset_ref("ds", "lab")


def corrupt_largest_pack(objects: Path) -> None:
    """Flip a byte in the middle of the largest pack (the file data, not the small manifest)."""
    pack = max((p for p in objects.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))


def test_corrupted_chunk_is_data_loss_naming_the_file(
    data_client: DataClient, data_settings: Any, tmp_path: Path
) -> None:
    write_tree(tmp_path / "src", {"images/cat.png": os.urandom(50_000)})
    push(data_client, tmp_path / "src", REF)
    corrupt_largest_pack(Path(data_settings.object_store))

    with pytest.raises(DataLoss, match=r"lab/ds@v1 file 'images/cat.png' are corrupted"):
        b"".join(data_client.read_file("projects/lab/datasets/ds/versions/v1", "images/cat.png"))
    with pytest.raises(DataLoss, match="images/cat.png"):
        pull(data_client, REF, tmp_path / "out")
    assert not (tmp_path / "out" / "images" / "cat.png").exists()


def test_byte_ranges(data_client: DataClient, tmp_path: Path) -> None:
    blob = os.urandom(3_000_000)
    write_tree(tmp_path / "src", {"blob": blob})
    push(data_client, tmp_path / "src", REF)
    name = "projects/lab/datasets/ds/versions/v1"
    assert (
        b"".join(data_client.read_file(name, "blob", offset=1_234_567, length=1_000_000)) == blob[1_234_567:2_234_567]
    )
    assert b"".join(data_client.read_file(name, "blob", offset=2_999_990)) == blob[2_999_990:]


def test_gc_frees_only_unreferenced_chunks_after_grace(data_client: DataClient, tmp_path: Path) -> None:
    files = random_tree(tmp_path / "src", count=10, size=20_000)
    push(data_client, tmp_path / "src", REF)
    write_tree(tmp_path / "src", {"extra.bin": os.urandom(300_000)})
    push(data_client, tmp_path / "src", REF)

    assert data_client.garbage_collect(grace_seconds=0).freed_bytes == 0
    data_client.delete_version("projects/lab/datasets/ds/versions/v2")
    assert data_client.garbage_collect(grace_seconds=3600).deleted_chunks == 0
    dry = data_client.garbage_collect(grace_seconds=0, dry_run=True)
    assert dry.freed_bytes >= 300_000
    report = data_client.garbage_collect(grace_seconds=0)
    assert report.freed_bytes == dry.freed_bytes
    assert report.deleted_chunks == dry.deleted_chunks

    pull(data_client, REF, tmp_path / "out")
    assert read_tree(tmp_path / "out") == files


def test_usage_counts_logical_and_deduplicated(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a": os.urandom(10_000), "copy-of-a": b""})
    (tmp_path / "src" / "copy-of-a").write_bytes((tmp_path / "src" / "a").read_bytes())
    push(data_client, tmp_path / "src", REF)
    write_tree(tmp_path / "src", {"b": os.urandom(5_000)})
    push(data_client, tmp_path / "src", REF)

    usage = data_client.usage("lab")
    assert usage.project.logical_bytes == 20_000 + 25_000
    assert usage.datasets[0].deduplicated_bytes == 15_000
    assert usage.project.deduplicated_bytes >= 15_000
    assert usage.project.version_count == 2


def test_tagged_versions_are_deleted_only_when_forced(data_client: DataClient, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a": b"1"})
    push(data_client, tmp_path / "src", REF)
    data_client.tag(REF.dataset_name, "keep", "v1")
    with pytest.raises(FailedPrecondition, match="tagged keep"):
        data_client.delete_version("projects/lab/datasets/ds/versions/v1")
    with pytest.raises(FailedPrecondition, match="has tags"):
        data_client.delete_dataset(REF.dataset_name)
    data_client.delete_version("projects/lab/datasets/ds/versions/v1", force=True)
    assert list(data_client.list_versions(REF.dataset_name)) == []
    assert data_client.list_tags(REF.dataset_name) == []
    write_tree(tmp_path / "src", {"a": b"2"})
    assert push(data_client, tmp_path / "src", REF).version.number == 2


def test_s3_backend_round_trip(serve: Callable[[Callable[[], Any]], str], s3_endpoint: str, tmp_path: Path) -> None:
    from services.data.server import build
    from services.data.settings import DataSettings

    settings = DataSettings(
        home=tmp_path / "home",
        object_store=f"s3://testing:testing@{s3_endpoint}/atelier-roundtrip/team-a",
        pack_target_bytes=512 * 1024,
    )
    client = DataClient.at(serve(lambda: build(settings)))
    files = random_tree(tmp_path / "src", count=30, size=40_000)
    files["big.bin"] = os.urandom(3_000_000)
    write_tree(tmp_path / "src", files)
    push(client, tmp_path / "src", REF)
    pull(client, REF, tmp_path / "out")
    assert read_tree(tmp_path / "out") == files
    client.delete_version("projects/lab/datasets/ds/versions/v1")
    assert client.garbage_collect(grace_seconds=0).freed_bytes >= sum(len(v) for v in files.values())
