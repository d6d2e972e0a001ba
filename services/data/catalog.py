"""Projects, datasets and versions: creation, lookup, reference resolution, listing, deletion."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col, select

from atelier.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from atelier.names import parse_name, validate_id, version_name
from atelier.runtime.pagination import decode_token, encode_token, page_size
from services.data.content import Content, LoadedManifest
from services.data.manifests import chunk_sizes
from services.data.store import DatasetRecord, DataStore, ProjectRecord, now
from services.data.tables import ArtifactRow, DatasetRow, PinRow, ProjectRow, TagEventRow, TagRow, VersionRow

R = TypeVar("R")
# At most nine digits: a larger number names no version (and would not fit the column).
_NUMBER = re.compile(r"v([1-9][0-9]{0,8})")
_HEX = re.compile(r"[0-9a-f]{6,64}")
DATASET = "projects/{project}/datasets/{dataset}"
VERSION = "projects/{project}/datasets/{dataset}/versions/{version}"


@dataclass(frozen=True)
class ResolvedVersion:
    """A version with the names it is known by."""

    project: str
    dataset: DatasetRow
    row: VersionRow
    tags: list[str]

    @property
    def name(self) -> str:
        return version_name(self.project, self.dataset.name, f"v{self.row.number}")

    @property
    def label(self) -> str:
        """How people write it: `project/dataset@vN`."""
        return f"{self.project}/{self.dataset.name}@v{self.row.number}"

    @property
    def digest(self) -> str:
        return self.row.digest

    @property
    def manifest_digests(self) -> bytes:
        return self.row.manifest_digests

    @property
    def manifest_sizes(self) -> list[int]:
        return self.row.manifest_sizes


class HasManifest(Protocol):
    """Anything whose files a manifest lists: a dataset version or an artifact."""

    @property
    def name(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def manifest_digests(self) -> bytes: ...
    @property
    def manifest_sizes(self) -> list[int]: ...


class Catalog:
    """The resource side of the data service."""

    def __init__(self, store: DataStore, content: Content) -> None:
        self.store = store
        self.content = content

    # Projects -------------------------------------------------------------------------------

    def create_project(self, project_id: str, description: str, quota_bytes: int) -> ProjectRow:
        validate_id("project", project_id)
        _check_quota(quota_bytes)
        with self.store.session() as session:
            if session.exec(select(ProjectRow).where(ProjectRow.name == project_id)).first():
                raise AlreadyExists(f"project {project_id!r} already exists")
            row = ProjectRow(name=project_id, description=description, quota_bytes=quota_bytes, create_time=now())
            session.add(row)
        return row

    def get_project(self, name: str) -> ProjectRecord:
        return self.store.read_project(parse_name(name, "projects/{project}")["project"])

    def list_projects(self, size: int, token: str) -> tuple[Sequence[ProjectRow], str]:
        limit = page_size(size)
        with self.store.session() as session:
            rows = self.store.list_projects(session, decode_token(token, ""), limit + 1)
        return _page(rows, limit, lambda r: r.name)

    def update_project(self, name: str, description: str | None, quota_bytes: int | None) -> ProjectRow:
        project = parse_name(name, "projects/{project}", "project.name")["project"]
        with self.store.session() as session:
            row = self.store.project(session, project)
            if description is not None:
                row.description = description
            if quota_bytes is not None:
                _check_quota(quota_bytes)
                row.quota_bytes = quota_bytes
            session.add(row)
        return row

    # Datasets -------------------------------------------------------------------------------

    def create_dataset(self, parent: str, dataset_id: str, description: str) -> DatasetRow:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        validate_id("dataset", dataset_id)
        with self.store.session() as session:
            owner = self.store.project(session, project)
            assert owner.id is not None
            exists = session.exec(
                select(DatasetRow).where(DatasetRow.project_id == owner.id, DatasetRow.name == dataset_id)
            ).first()
            if exists:
                raise AlreadyExists(f"dataset {dataset_id!r} already exists in project {project!r}")
            row = DatasetRow(project_id=owner.id, name=dataset_id, description=description, create_time=now())
            session.add(row)
        return row

    def get_dataset(self, name: str) -> tuple[str, DatasetRecord]:
        parts = parse_name(name, DATASET)
        return parts["project"], self.store.read_dataset(parts["project"], parts["dataset"])

    def list_datasets(self, parent: str, size: int, token: str) -> tuple[Sequence[DatasetRow], str]:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        limit = page_size(size)
        with self.store.session() as session:
            owner = self.store.project(session, project)
            assert owner.id is not None
            rows = self.store.list_datasets(session, owner.id, decode_token(token, ""), limit + 1)
        return _page(rows, limit, lambda r: r.name)

    def delete_dataset(self, name: str, force: bool) -> None:
        parts = parse_name(name, DATASET)
        with self.store.session() as session:
            dataset = self.store.dataset(session, parts["project"], parts["dataset"], for_update=True)
            tags = session.exec(select(TagRow.name).where(TagRow.dataset_id == dataset.id)).all()
            if tags and not force:
                raise FailedPrecondition(
                    f"dataset {name} has tags ({', '.join(tags)}); delete them or pass force",
                    metadata={"resource": name},
                )
            release_pins(session, f"{name}/versions/", force, prefix=True)
            for table in (TagRow, TagEventRow, VersionRow):
                session.execute(sa.delete(table).where(col(table.dataset_id) == dataset.id))  # type: ignore[attr-defined]
            session.execute(sa.delete(DatasetRow).where(col(DatasetRow.id) == dataset.id))
            self.recount_project(session, dataset.project_id)

    # Versions -------------------------------------------------------------------------------

    def resolve(self, session: Session, project: str, dataset: str, ref: str) -> ResolvedVersion:
        """Find the version a reference means: `v{N}`, `latest`, a tag, or a digest prefix."""
        row = self.store.dataset(session, project, dataset)
        assert row.id is not None
        label = f"{project}/{dataset}@{ref}"
        version: VersionRow | None = None
        number = _NUMBER.fullmatch(ref)
        if number:
            version = self.store.version(session, row.id, int(number.group(1)))
        elif ref == "latest":
            if row.head_number == 0:
                raise NotFound(f"dataset {project}/{dataset} has no versions yet", metadata={"resource": label})
            version = self.store.version(session, row.id, row.head_number)
        else:
            tag = self.store.tag(session, row.id, ref)
            if tag is not None:
                version = session.get(VersionRow, tag.version_id)
            elif _HEX.fullmatch(ref):
                matches = self.store.versions_by_digest_prefix(session, row.id, ref)
                if len({m.digest for m in matches}) > 1:
                    shown = ", ".join(f"v{m.number} ({m.digest[:12]})" for m in matches)
                    raise InvalidArgument(
                        f"digest prefix {ref!r} of {project}/{dataset} is ambiguous: {shown}; give more characters",
                        metadata={"field": "name", "value": ref},
                    )
                version = matches[0] if matches else None
        if version is None:
            raise NotFound(
                f"no version {label}: references are vN, latest, a tag, or a digest prefix of 6+ hex characters",
                metadata={"resource": version_name(project, dataset, ref)},
            )
        assert version.id is not None
        tags = self.store.tags_of_versions(session, [version.id]).get(version.id, [])
        return ResolvedVersion(project, row, version, tags)

    def get_version(self, name: str) -> ResolvedVersion:
        parts = parse_name(name, VERSION)
        with self.store.session() as session:
            return self.resolve(session, parts["project"], parts["dataset"], parts["version"])

    def list_versions(self, parent: str, size: int, token: str) -> tuple[list[ResolvedVersion], str]:
        parts = parse_name(parent, DATASET, "parent")
        limit = page_size(size)
        with self.store.session() as session:
            dataset = self.store.dataset(session, parts["project"], parts["dataset"])
            assert dataset.id is not None
            rows = self.store.list_versions(session, dataset.id, decode_token(token, 2**31 - 1), limit + 1)
            tags = self.store.tags_of_versions(session, [r.id for r in rows if r.id is not None])
        page, next_token = _page(rows, limit, lambda r: r.number)
        resolved = [ResolvedVersion(parts["project"], dataset, r, tags.get(r.id or 0, [])) for r in page]
        return resolved, next_token

    def delete_version(self, name: str, force: bool) -> None:
        parts = parse_name(name, VERSION)
        if not _NUMBER.fullmatch(parts["version"]):
            raise InvalidArgument(
                f"delete a version by its number (vN), not {parts['version']!r}: a tag or 'latest' moves, "
                "and deleting through it again would take another version",
                metadata={"field": "name", "value": name},
            )
        with self.store.session() as session:
            resolved = self.resolve(session, parts["project"], parts["dataset"], parts["version"])
            if resolved.tags and not force:
                raise FailedPrecondition(
                    f"{resolved.name} is tagged {', '.join(resolved.tags)}; move or delete the tags, or pass force",
                    metadata={"resource": resolved.name},
                )
            release_pins(session, resolved.name, force)
            dataset = resolved.dataset
            session.execute(sa.delete(TagRow).where(col(TagRow.version_id) == resolved.row.id))
            session.execute(sa.delete(VersionRow).where(col(VersionRow.id) == resolved.row.id))
            remaining = session.exec(
                select(sa.func.max(VersionRow.number)).where(VersionRow.dataset_id == dataset.id)
            ).one()
            session.execute(
                sa.update(DatasetRow)
                .where(col(DatasetRow.id) == dataset.id)
                .values(head_number=remaining or 0, version_count=DatasetRow.version_count - 1)
            )
            self.recount_project(session, dataset.project_id)

    def manifest(self, holder: HasManifest) -> LoadedManifest:
        return self.content.load_manifest(holder.digest, holder.manifest_digests, holder.manifest_sizes, holder.name)

    def recount_project(self, session: Session, project_id: int) -> None:
        """Recompute the project's chunk set from its remaining versions (after a deletion)."""
        datasets = session.exec(select(DatasetRow.id).where(DatasetRow.project_id == project_id)).all()
        chunks: dict[bytes, int] = {}
        holders: list[VersionRow | ArtifactRow] = list(
            self.store.all_versions(session, [d for d in datasets if d is not None])
        )
        holders += session.exec(select(ArtifactRow).where(ArtifactRow.project_id == project_id)).all()
        for row in holders:
            loaded = self.content.load_manifest(row.digest, row.manifest_digests, row.manifest_sizes, row.digest)
            chunks.update(chunk_sizes(loaded.manifest))
        total = self.store.replace_project_chunks(session, project_id, chunks)
        session.execute(sa.update(ProjectRow).where(col(ProjectRow.id) == project_id).values(stored_bytes=total))


def release_pins(session: Session, target: str, force: bool, prefix: bool = False) -> None:
    """Refuse to go on while pins hold `target` (or anything under it), naming who holds it;
    with `force`, drop the pins."""
    where = col(PinRow.target).startswith(target) if prefix else col(PinRow.target) == target
    owners = session.exec(select(PinRow.owner).where(where).limit(6)).all()
    if owners and not force:
        shown = ", ".join(owners[:5]) + (" and more" if len(owners) > 5 else "")
        raise FailedPrecondition(
            f"{target.rstrip('/')} is referenced by {shown}; delete those first or pass force",
            metadata={"resource": target.rstrip("/"), "owner": owners[0]},
        )
    session.execute(sa.delete(PinRow).where(where))


def _check_quota(quota_bytes: int) -> None:
    if quota_bytes < 0:
        raise InvalidArgument(
            f"quota_bytes must be >= 0 (0 = unlimited), got {quota_bytes}", metadata={"field": "quota_bytes"}
        )


def _page(rows: Sequence[R], limit: int, key: Callable[[R], Any]) -> tuple[Sequence[R], str]:
    if len(rows) > limit:
        return rows[:limit], encode_token(key(rows[limit - 1]))
    return rows, ""
