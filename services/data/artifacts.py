"""Artifacts: content-addressed file trees stored for other services (run files, model weights)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from atelier.data.v1 import resources_pb2 as pb
from atelier.errors import InvalidArgument, NotFound
from atelier.names import parse_name
from services.data import manifests
from services.data.catalog import Catalog, release_pins
from services.data.commit import charge_project
from services.data.store import now
from services.data.tables import ArtifactRow, ProjectRow

ARTIFACT = "projects/{project}/artifacts/{artifact}"
_PREFIX = re.compile(r"[0-9a-f]{6,64}")
_ARTIFACTS: sa.Table = ArtifactRow.__table__  # type: ignore[attr-defined]
_PROJECTS: sa.Table = ProjectRow.__table__  # type: ignore[attr-defined]
_IDS = sa.select(_ARTIFACTS.c.digest, _ARTIFACTS.c.project_id).join(
    _PROJECTS, _PROJECTS.c.id == _ARTIFACTS.c.project_id
)
_BY_DIGEST = _IDS.where(_PROJECTS.c.name == sa.bindparam("project"), _ARTIFACTS.c.digest == sa.bindparam("ref"))
_BY_PREFIX = _IDS.where(
    _PROJECTS.c.name == sa.bindparam("project"),
    _ARTIFACTS.c.digest.startswith(sa.bindparam("ref")),  # ref is hex: nothing to escape
).limit(2)


@dataclass(frozen=True)
class ResolvedArtifact:
    """An artifact with its project's id."""

    project: str
    row: ArtifactRow

    @property
    def name(self) -> str:
        return f"projects/{self.project}/artifacts/{self.row.digest}"

    @property
    def label(self) -> str:
        return f"artifact {self.project}/{self.row.digest[:12]}"

    @property
    def digest(self) -> str:
        return self.row.digest

    @property
    def manifest_digests(self) -> bytes:
        return self.row.manifest_digests

    @property
    def manifest_sizes(self) -> list[int]:
        return self.row.manifest_sizes


class Artifacts:
    """Create, find and delete artifacts."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.store = catalog.store

    def create(self, parent: str, chunks: Sequence[pb.ChunkRef], digest: str) -> ResolvedArtifact:
        project = parse_name(parent, "projects/{project}", "parent")["project"]
        if not chunks:
            raise InvalidArgument("manifest_chunks is empty: upload the serialized manifest and list its chunks")
        manifest = self.catalog.content.parse_uploaded_manifest(chunks, digest)
        checked = manifests.validate(manifest)
        with self.store.session() as session:
            owner = self.store.project(session, project)
            existing = self._find(session, owner, digest)
            if existing is not None:
                return ResolvedArtifact(project, existing)
            charge_project(self.store, session, owner, checked.chunks, "artifact")
            assert owner.id is not None
            row = ArtifactRow(
                project_id=owner.id,
                digest=digest,
                total_size=checked.total_size,
                file_count=len(manifest.files),
                create_time=now(),
                manifest_digests=b"".join(c.digest for c in chunks),
                manifest_sizes=[c.size_bytes for c in chunks],
            )
            session.add(row)
        return ResolvedArtifact(project, row)

    def get(self, name: str) -> ResolvedArtifact:
        with self.store.session() as session:
            return self.find(session, name)

    def find(self, session: Session, name: str) -> ResolvedArtifact:
        """`get` inside the caller's transaction."""
        parts = parse_name(name, ARTIFACT)
        ref = parts["artifact"]
        if not _PREFIX.fullmatch(ref):
            raise InvalidArgument(
                f"artifact id {ref!r} must be a digest (or a prefix of 6+ lowercase hex characters)",
                metadata={"field": "name", "value": name},
            )
        owner = self.store.project(session, parts["project"])
        rows = session.exec(
            select(ArtifactRow)
            .where(ArtifactRow.project_id == owner.id, col(ArtifactRow.digest).startswith(ref))
            .limit(2)
        ).all()
        if not rows:
            raise NotFound(f"no artifact {ref} in project {parts['project']!r}", metadata={"resource": name})
        if len(rows) > 1:
            raise InvalidArgument(f"artifact prefix {ref!r} is ambiguous; give more characters")
        return ResolvedArtifact(parts["project"], rows[0])

    def locate(self, session: Session, name: str) -> tuple[str, str, int]:
        """The canonical name, project and project id of an artifact, reading only those (what a
        pin needs); the errors of `find`."""
        parts = parse_name(name, ARTIFACT)
        ref = parts["artifact"]
        if _PREFIX.fullmatch(ref):
            query = _BY_DIGEST if len(ref) == 64 else _BY_PREFIX
            rows = session.connection().execute(query, {"project": parts["project"], "ref": ref}).all()
            if len(rows) == 1:
                return f"projects/{parts['project']}/artifacts/{rows[0][0]}", parts["project"], rows[0][1]
        found = self.find(session, name)  # none or several: its error says which
        return found.name, found.project, found.row.project_id

    def delete(self, name: str, force: bool) -> None:
        artifact = self.get(name)
        with self.store.session() as session:
            release_pins(session, artifact.name, force)
            row = session.get(ArtifactRow, artifact.row.id)
            if row is not None:
                session.delete(row)
            self.catalog.recount_project(session, artifact.row.project_id)

    def _find(self, session: Session, owner: ProjectRow, digest: str) -> ArtifactRow | None:
        query = select(ArtifactRow).where(ArtifactRow.project_id == owner.id, ArtifactRow.digest == digest)
        return session.exec(query).first()
