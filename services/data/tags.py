"""Tags: movable names for versions, with the history of every move."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlmodel import Session

from atelier.errors import AlreadyExists, InvalidArgument, NotFound
from atelier.names import parse_name, validate_id
from atelier.runtime.pagination import decode_token, page_size
from services.data.catalog import DATASET, Catalog, _page
from services.data.store import now
from services.data.tables import DatasetRow, TagEventRow, TagRow, VersionRow

TAG = "projects/{project}/datasets/{dataset}/tags/{tag}"
_RESERVED = re.compile(r"latest|v[0-9]+")
_DIGEST_PREFIX = re.compile(r"[0-9a-f]{6,64}")


class Tags:
    """Create, move, delete and list tags."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.store = catalog.store

    def _target(self, session: Session, project: str, dataset: str, ref: str) -> VersionRow:
        if ref.startswith("projects/"):
            parts = parse_name(ref, "projects/{project}/datasets/{dataset}/versions/{version}", "tag.version")
            if (parts["project"], parts["dataset"]) != (project, dataset):
                raise InvalidArgument(
                    f"tag.version {ref!r} belongs to another dataset than {project}/{dataset}",
                    metadata={"field": "tag.version"},
                )
            ref = parts["version"]
        if not ref:
            raise InvalidArgument("tag.version is required: the version the tag points at")
        return self.catalog.resolve(session, project, dataset, ref).row

    def create(self, parent: str, tag_id: str, ref: str, author: str) -> tuple[TagRow, DatasetRow, int]:
        parts = parse_name(parent, DATASET, "parent")
        validate_id("tag", tag_id)
        if _RESERVED.fullmatch(tag_id):
            raise InvalidArgument(
                f"tag id {tag_id!r} is reserved: 'latest' and vN already name versions",
                metadata={"field": "tag_id", "value": tag_id},
            )
        if _DIGEST_PREFIX.fullmatch(tag_id):
            raise InvalidArgument(
                f"tag id {tag_id!r} reads as a digest prefix (6 or more hex characters), which references "
                "already resolve to versions; add a letter past f",
                metadata={"field": "tag_id", "value": tag_id},
            )
        with self.store.session() as session:
            dataset = self.store.dataset(session, parts["project"], parts["dataset"])
            assert dataset.id is not None
            if self.store.tag(session, dataset.id, tag_id) is not None:
                raise AlreadyExists(f"tag {tag_id!r} already exists on {parent}; move it with an update")
            target = self._target(session, parts["project"], parts["dataset"], ref)
            assert target.id is not None
            row = TagRow(dataset_id=dataset.id, name=tag_id, version_id=target.id, author=author, update_time=now())
            session.add(row)
            session.add(
                TagEventRow(
                    dataset_id=dataset.id, tag=tag_id, number=target.number, author=author, event_time=row.update_time
                )
            )
        return row, dataset, target.number

    def _existing(self, session: Session, name: str) -> tuple[dict[str, str], DatasetRow, TagRow]:
        parts = parse_name(name, TAG)
        dataset = self.store.dataset(session, parts["project"], parts["dataset"])
        assert dataset.id is not None
        tag = self.store.tag(session, dataset.id, parts["tag"])
        if tag is None:
            raise NotFound(
                f"tag {parts['tag']!r} not found on {parts['project']}/{parts['dataset']}", metadata={"resource": name}
            )
        return parts, dataset, tag

    def get(self, name: str) -> tuple[TagRow, DatasetRow, int]:
        with self.store.session() as session:
            _, dataset, tag = self._existing(session, name)
            version = session.get(VersionRow, tag.version_id)
            assert version is not None
            return tag, dataset, version.number

    def move(self, name: str, ref: str, author: str) -> tuple[TagRow, DatasetRow, int]:
        with self.store.session() as session:
            parts, dataset, tag = self._existing(session, name)
            previous = session.get(VersionRow, tag.version_id)
            target = self._target(session, parts["project"], parts["dataset"], ref)
            assert target.id is not None
            assert dataset.id is not None
            tag.version_id, tag.author, tag.update_time = target.id, author, now()
            session.add(tag)
            session.add(
                TagEventRow(
                    dataset_id=dataset.id,
                    tag=tag.name,
                    number=target.number,
                    author=author,
                    previous_number=previous.number if previous else 0,
                    event_time=tag.update_time,
                )
            )
            return tag, dataset, target.number

    def delete(self, name: str, author: str) -> None:
        with self.store.session() as session:
            _, dataset, tag = self._existing(session, name)
            previous = session.get(VersionRow, tag.version_id)
            assert dataset.id is not None
            session.delete(tag)
            session.add(
                TagEventRow(
                    dataset_id=dataset.id,
                    tag=tag.name,
                    number=0,
                    author=author,
                    previous_number=previous.number if previous else 0,
                    event_time=now(),
                )
            )

    def list(self, parent: str, size: int, token: str) -> tuple[Sequence[tuple[TagRow, int]], str]:
        parts = parse_name(parent, DATASET, "parent")
        limit = page_size(size)
        with self.store.session() as session:
            dataset = self.store.dataset(session, parts["project"], parts["dataset"])
            assert dataset.id is not None
            rows = self.store.list_tags(session, dataset.id, decode_token(token, ""), limit + 1)
            page, next_token = _page(rows, limit, lambda r: r.name)
            numbers = {r.version_id: session.get(VersionRow, r.version_id) for r in page}
            return [(r, v.number if (v := numbers[r.version_id]) else 0) for r in page], next_token

    def events(self, parent: str, size: int, token: str) -> tuple[Sequence[TagEventRow], str]:
        parts = parse_name(parent, DATASET, "parent")
        limit = page_size(size)
        with self.store.session() as session:
            dataset = self.store.dataset(session, parts["project"], parts["dataset"])
            assert dataset.id is not None
            rows = self.store.list_tag_events(session, dataset.id, decode_token(token, 2**31 - 1), limit + 1)
        return _page(rows, limit, lambda r: r.id)
