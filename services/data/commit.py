"""Committing a version: the one place a version becomes visible, atomically.

The client has uploaded every chunk and the serialized manifest. The commit verifies the manifest,
checks that each chunk it references is stored, enforces the project's quota, and then in one
transaction advances the dataset's head by compare-and-set, inserts the version and extends the
project's chunk set. A stale parent fails with ABORTED, or is rebased when asked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from atelier.data.v1 import resources_pb2 as pb
from atelier.errors import Aborted, ErrorReason, FailedPrecondition, InvalidArgument, ResourceExhausted
from atelier.names import parse_name
from services.data import manifests
from services.data.catalog import DATASET, Catalog, ResolvedVersion
from services.data.store import DataStore, now
from services.data.tables import DatasetRow, ProjectRow, VersionRow

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_REBASES = 5


def create_version(
    catalog: Catalog,
    parent: str,
    version: pb.DatasetVersion,
    manifest_chunks: Sequence[pb.ChunkRef],
    manifest_digest: str,
    rebase: bool,
) -> ResolvedVersion:
    """Commit a version of dataset `parent`; returns it (or the unchanged head when nothing changed)."""
    parts = parse_name(parent, DATASET, "parent")
    project, dataset_id = parts["project"], parts["dataset"]
    if not _HEX64.fullmatch(manifest_digest):
        raise InvalidArgument(
            f"manifest_digest {manifest_digest!r} must be 64 lowercase hex characters",
            metadata={"field": "manifest_digest"},
        )
    if not manifest_chunks:
        raise InvalidArgument("manifest_chunks is empty: upload the serialized manifest and list its chunks")
    if len(version.parents) > 1:
        raise InvalidArgument("a version has at most one parent (the version its changes are based on)")
    ours = catalog.content.parse_uploaded_manifest(manifest_chunks, manifest_digest)
    checked = manifests.validate(ours)
    chunks_of_manifest = [(c.digest, c.size_bytes) for c in manifest_chunks]

    with catalog.store.session() as session:
        base = _expected_parent(catalog, session, project, dataset_id, version)
    base_number = base.row.number if base else 0
    digest = manifest_digest
    for _ in range(_MAX_REBASES):
        with catalog.store.session() as session:
            dataset = catalog.store.dataset(session, project, dataset_id)
            head = catalog.resolve(session, project, dataset_id, "latest") if dataset.head_number else None
        if dataset.head_number != base_number:
            if not rebase:
                raise Aborted(
                    f"{project}/{dataset_id} has moved: this push is based on v{base_number}, the newest is "
                    f"v{dataset.head_number}; pull and retry, or push with rebase",
                    metadata={"head": f"v{dataset.head_number}", "base": f"v{base_number}"},
                )
            assert head is not None
            base_manifest = catalog.manifest(base).manifest if base else pb.Manifest()
            ours = manifests.rebase(base_manifest, ours, catalog.manifest(head).manifest, head.name)
            checked = manifests.validate(ours)
            digest, stored = catalog.content.store_manifest(ours)
            chunks_of_manifest = [(s.digest, s.length) for s in stored.chunks]
            base, base_number = head, head.row.number
        if head is not None and head.row.digest == digest and head.row.number == base_number:
            return head
        committed = _insert(
            catalog,
            project=project,
            dataset_id=dataset_id,
            expected_head=base_number,
            manifest=ours,
            checked=checked,
            digest=digest,
            manifest_chunks=chunks_of_manifest,
            version=version,
            parent=base,
        )
        if committed is not None:
            return committed
        if not rebase:
            raise Aborted(f"{project}/{dataset_id} moved during the commit; pull and retry, or push with rebase")
    raise Aborted(f"{project}/{dataset_id} keeps moving; gave up after {_MAX_REBASES} rebases")


def _expected_parent(
    catalog: Catalog, session: Session, project: str, dataset: str, version: pb.DatasetVersion
) -> ResolvedVersion | None:
    if not version.parents:
        return None
    ref = version.parents[0]
    if ref.startswith("projects/"):
        parts = parse_name(ref, "projects/{project}/datasets/{dataset}/versions/{version}", "version.parents")
        if (parts["project"], parts["dataset"]) != (project, dataset):
            raise InvalidArgument(
                f"parent {ref!r} is not a version of {project}/{dataset}", metadata={"field": "version.parents"}
            )
        ref = parts["version"]
    return catalog.resolve(session, project, dataset, ref)


def _insert(
    catalog: Catalog,
    *,
    project: str,
    dataset_id: str,
    expected_head: int,
    manifest: pb.Manifest,
    checked: manifests.Checked,
    digest: str,
    manifest_chunks: list[tuple[bytes, int]],
    version: pb.DatasetVersion,
    parent: ResolvedVersion | None,
) -> ResolvedVersion | None:
    """One transaction: check chunks and quota, compare-and-set the head, insert. None if the head moved."""
    store = catalog.store
    # Manifests are not counted as project usage; the version rows protect their chunks from GC.
    with store.session() as session:
        dataset: DatasetRow = store.dataset(session, project, dataset_id, for_update=True)
        owner: ProjectRow = session.get(ProjectRow, dataset.project_id)  # type: ignore[assignment]
        assert owner.id is not None
        assert dataset.id is not None
        number = store.advance_head(session, dataset.id, expected_head)
        if number is None:
            return None
        charge_project(store, session, owner, checked.chunks, "version")
        row = VersionRow(
            dataset_id=dataset.id,
            number=number,
            digest=digest,
            parents=[parent.name] if parent else [],
            author=version.author,
            message=version.message,
            create_time=now(),
            user_metadata=_metadata(version),
            total_size=checked.total_size,
            file_count=len(manifest.files),
            manifest_digests=b"".join(d for d, _ in manifest_chunks),
            manifest_sizes=[n for _, n in manifest_chunks],
        )
        session.add(row)
        session.flush()
        dataset.head_number = number
    return ResolvedVersion(project, dataset, row, [])


def charge_project(
    store: DataStore, session: Session, owner: ProjectRow, referenced: dict[bytes, int], what: str
) -> None:
    """Add the chunks a new version or artifact references to its project's set, refusing (and so
    rolling back) when one is not stored or the project's quota does not allow the bytes new to it."""
    assert owner.id is not None
    charge = store.charge(session, owner.id, referenced)
    added, missing = charge.added_bytes, charge.missing_chunks
    if missing:
        first = charge.first_missing
        assert first is not None
        raise FailedPrecondition(
            f"{missing} chunk(s) referenced by the manifest are not stored (first: {first.hex()}); "
            "upload them and commit again",
            reason=ErrorReason.ERROR_REASON_MISSING_CHUNKS,
            metadata={"missing": str(missing)},
        )
    if owner.quota_bytes and owner.stored_bytes + added > owner.quota_bytes:
        raise ResourceExhausted(
            f"project {owner.name!r} quota exceeded: this {what} adds {added} bytes to "
            f"{owner.stored_bytes} stored, quota is {owner.quota_bytes} bytes",
            metadata={"quota_bytes": str(owner.quota_bytes), "needed_bytes": str(owner.stored_bytes + added)},
        )
    owner.stored_bytes += added
    session.add(owner)


def _metadata(version: pb.DatasetVersion) -> dict[str, Any]:
    from google.protobuf import json_format

    if not version.HasField("metadata"):
        return {}
    try:
        return json_format.MessageToDict(version.metadata)
    except ValueError as error:  # NaN or an infinity: JSON has no such numbers
        raise InvalidArgument(
            f"version.metadata cannot be stored as JSON ({error}); use finite numbers",
            metadata={"field": "version.metadata"},
        ) from None
