"""Storage usage and garbage collection."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select

from atelier.names import parse_name
from services.data.catalog import Catalog
from services.data.manifests import chunk_sizes
from services.data.packs import pack_age_seconds, pack_key
from services.data.store import now
from services.data.tables import ArtifactRow, ChunkRow, DatasetRow, PackRow, ProjectChunkRow, VersionRow

# A pack whose dead bytes exceed this share is rewritten with only its live chunks.
_REWRITE_DEAD_SHARE = 0.5


@dataclass(frozen=True)
class Usage:
    resource: str
    logical_bytes: int
    deduplicated_bytes: int
    version_count: int
    quota_bytes: int = 0


@dataclass(frozen=True)
class GcReport:
    deleted_chunks: int
    freed_bytes: int
    rewritten_packs: int


def storage_usage(catalog: Catalog, name: str) -> tuple[Usage, list[Usage]]:
    """Logical and deduplicated bytes of a project and of each of its datasets."""
    project = parse_name(name, "projects/{project}")["project"]
    store = catalog.store
    with store.session() as session:
        owner = store.project(session, project)
        datasets = session.exec(
            select(DatasetRow).where(DatasetRow.project_id == owner.id).order_by(col(DatasetRow.name))
        ).all()
        versions = store.all_versions(session, [d.id for d in datasets if d.id is not None])
    per_dataset: list[Usage] = []
    for dataset in datasets:
        rows = [v for v in versions if v.dataset_id == dataset.id]
        chunks: dict[bytes, int] = {}
        for row in rows:
            loaded = catalog.content.load_manifest(
                row.digest, row.manifest_digests, row.manifest_sizes, f"v{row.number}"
            )
            chunks.update(chunk_sizes(loaded.manifest))
        per_dataset.append(
            Usage(f"{name}/datasets/{dataset.name}", sum(r.total_size for r in rows), sum(chunks.values()), len(rows))
        )
    total = Usage(name, sum(v.total_size for v in versions), owner.stored_bytes, len(versions), owner.quota_bytes)
    return total, per_dataset


def garbage_collect(catalog: Catalog, grace_seconds: float, dry_run: bool) -> GcReport:
    """Delete chunks no version references and nobody touched within the grace period.

    Index rows go first (in one transaction), objects after, so a crash leaves at worst an orphan
    pack that the next run removes. Packs left with mostly dead bytes are rewritten.
    """
    store = catalog.store
    cutoff = time.time() - grace_seconds
    referenced = sa.exists().where(col(ProjectChunkRow.digest) == col(ChunkRow.digest))
    with store.session() as session:
        holders = [*session.exec(select(VersionRow.manifest_digests)).all()]
        holders += session.exec(select(ArtifactRow.manifest_digests)).all()
        manifest_chunks = {digests[i : i + 32] for digests in holders for i in range(0, len(digests), 32)}
        dead = session.exec(
            select(ChunkRow.digest, ChunkRow.pack, ChunkRow.length).where(
                col(ChunkRow.touched_at) < cutoff, ~referenced
            )
        ).all()
        packs = {row.key: row.size for row in session.exec(select(PackRow)).all()}
        live = dict(
            session.exec(select(ChunkRow.pack, sa.func.sum(ChunkRow.length)).group_by(col(ChunkRow.pack))).all()
        )
    dead = [row for row in dead if row[0] not in manifest_chunks]
    dead_bytes_by_pack: dict[str, int] = {}
    for _, pack, length in dead:
        dead_bytes_by_pack[pack] = dead_bytes_by_pack.get(pack, 0) + length
    freed = sum(length for _, _, length in dead)
    to_delete = [p for p in packs if live.get(p, 0) - dead_bytes_by_pack.get(p, 0) <= 0 and _old(p, grace_seconds)]
    to_rewrite = [
        p
        for p, size in packs.items()
        if p not in to_delete
        and size
        and (size - live.get(p, 0) + dead_bytes_by_pack.get(p, 0)) / size > _REWRITE_DEAD_SHARE
        and _old(p, grace_seconds)
    ]
    if dry_run:
        return GcReport(len(dead), freed, len(to_delete) + len(to_rewrite))
    with store.session() as session:
        digests = [d for d, _, _ in dead]
        for start in range(0, len(digests), 900):
            session.execute(sa.delete(ChunkRow).where(col(ChunkRow.digest).in_(digests[start : start + 900])))
        if to_delete:
            session.execute(sa.delete(PackRow).where(col(PackRow.key).in_(to_delete)))
    for pack in to_delete:
        catalog.content.objects.delete(pack)
    for pack in to_rewrite:
        freed += _rewrite(catalog, pack, packs[pack])
    freed += _remove_orphans(catalog, set(packs), grace_seconds)
    return GcReport(len(dead), freed, len(to_delete) + len(to_rewrite))


def _old(pack: str, grace_seconds: float) -> bool:
    age = pack_age_seconds(pack)
    return age is None or age >= grace_seconds


def _rewrite(catalog: Catalog, pack: str, size: int) -> int:
    """Copy a pack's live chunks into a new pack, repoint the index, drop the old object."""
    store, objects = catalog.store, catalog.content.objects
    with store.session() as session:
        rows = session.exec(select(ChunkRow).where(ChunkRow.pack == pack).order_by(col(ChunkRow.offset))).all()
    blob = objects.get(pack)
    fresh = pack_key()
    buffer = bytearray()
    moves: list[tuple[bytes, int]] = []
    for row in rows:
        moves.append((row.digest, len(buffer)))
        buffer += blob[row.offset : row.offset + row.length]
    objects.put(fresh, bytes(buffer))
    with store.session() as session:
        session.add(PackRow(key=fresh, size=len(buffer), create_time=now()))
        for digest, offset in moves:
            session.execute(sa.update(ChunkRow).where(col(ChunkRow.digest) == digest).values(pack=fresh, offset=offset))
        session.execute(sa.delete(PackRow).where(col(PackRow.key) == pack))
    objects.delete(pack)
    return size - len(buffer)


def _remove_orphans(catalog: Catalog, known: set[str], grace_seconds: float) -> int:
    """Pack objects no index row mentions (a crash between writing a pack and indexing it)."""
    freed = 0
    with catalog.store.session() as session:
        known |= set(session.exec(select(PackRow.key)).all())
    for key, size in list(catalog.content.objects.list("packs/")):
        if key not in known and _old(key, grace_seconds):
            catalog.content.objects.delete(key)
            freed += size
    return freed
