"""gRPC handlers of the DataService: validate, convert, call the domain, convert back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from itertools import islice
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2

from atelier.data.v1 import data_service_pb2 as rpc
from atelier.data.v1 import data_service_pb2_grpc
from atelier.data.v1 import resources_pb2 as pb
from atelier.errors import DataLoss, InvalidArgument
from atelier.names import parse_name, project_of
from atelier.runtime.auth import acting_as
from atelier.runtime.server import BlockingRunner
from services.data import convert
from services.data.artifacts import Artifacts
from services.data.catalog import DATASET, Catalog, HasManifest
from services.data.commit import create_version
from services.data.content import not_found_file
from services.data.listing import diff_versions, list_files
from services.data.maintenance import garbage_collect, storage_usage
from services.data.metrics import TransferMetrics
from services.data.pins import Pins
from services.data.settings import DataSettings
from services.data.tags import Tags
from services.data.uploads import Upload

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
_RESPONSE_BYTES = 1024 * 1024


def _take(items: Iterator[T], count: int) -> list[T]:
    return list(islice(items, count))


# The longest grace period GC takes: a hundred years (anything longer keeps everything just as well).
_MAX_GRACE_SECONDS = 100 * 365 * 86_400


def _take_bytes(chunks: Iterator[tuple[bytes, bytes]], limit: int) -> list[tuple[bytes, bytes]]:
    """Chunks up to about `limit` bytes, to keep each response message well under the size limit."""
    taken: list[tuple[bytes, bytes]] = []
    size = 0
    for item in chunks:
        taken.append(item)
        size += len(item[1])
        if size >= limit:
            break
    return taken


class DataServicer(data_service_pb2_grpc.DataServiceServicer):
    """Thin handlers over `Catalog`, `Tags`, `commit` and `maintenance`."""

    def __init__(
        self, catalog: Catalog, settings: DataSettings, run: BlockingRunner, transfers: TransferMetrics | None = None
    ) -> None:
        self.catalog = catalog
        self.transfers = transfers
        self.tags = Tags(catalog)
        self.artifacts = Artifacts(catalog)
        self.pins = Pins(self.artifacts)
        self.settings = settings
        self.run = run

    # Projects -------------------------------------------------------------------------------

    async def CreateProject(self, request: rpc.CreateProjectRequest, context: Context) -> pb.Project:
        row = await self.run(
            self.catalog.create_project, request.project_id, request.project.description, request.project.quota_bytes
        )
        return convert.project(row)

    async def GetProject(self, request: rpc.GetProjectRequest, context: Context) -> pb.Project:
        return convert.project(await self.run(self.catalog.get_project, request.name))

    async def ListProjects(self, request: rpc.ListProjectsRequest, context: Context) -> rpc.ListProjectsResponse:
        rows, token = await self.run(self.catalog.list_projects, request.page_size, request.page_token)
        return rpc.ListProjectsResponse(projects=[convert.project(r) for r in rows], next_page_token=token)

    async def UpdateProject(self, request: rpc.UpdateProjectRequest, context: Context) -> pb.Project:
        paths = set(request.update_mask.paths) or {"description", "quota_bytes"}
        unknown = paths - {"description", "quota_bytes"}
        if unknown:
            raise InvalidArgument(
                f"update_mask has {sorted(unknown)}: updatable fields are description, quota_bytes",
                metadata={"field": "update_mask"},
            )
        row = await self.run(
            self.catalog.update_project,
            request.project.name,
            request.project.description if "description" in paths else None,
            request.project.quota_bytes if "quota_bytes" in paths else None,
        )
        return convert.project(row)

    # Datasets -------------------------------------------------------------------------------

    async def CreateDataset(self, request: rpc.CreateDatasetRequest, context: Context) -> pb.Dataset:
        row = await self.run(
            self.catalog.create_dataset, request.parent, request.dataset_id, request.dataset.description
        )
        return convert.dataset(parse_name(request.parent, "projects/{project}", "parent")["project"], row)

    async def GetDataset(self, request: rpc.GetDatasetRequest, context: Context) -> pb.Dataset:
        project, row = await self.run(self.catalog.get_dataset, request.name)
        return convert.dataset(project, row)

    async def ListDatasets(self, request: rpc.ListDatasetsRequest, context: Context) -> rpc.ListDatasetsResponse:
        rows, token = await self.run(self.catalog.list_datasets, request.parent, request.page_size, request.page_token)
        project = parse_name(request.parent, "projects/{project}", "parent")["project"]
        return rpc.ListDatasetsResponse(datasets=[convert.dataset(project, r) for r in rows], next_page_token=token)

    async def DeleteDataset(self, request: rpc.DeleteDatasetRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.catalog.delete_dataset, request.name, request.force)
        return empty_pb2.Empty()

    # Chunks ---------------------------------------------------------------------------------

    async def FindMissingChunks(
        self, request: rpc.FindMissingChunksRequest, context: Context
    ) -> rpc.FindMissingChunksResponse:
        await self.run(self.catalog.get_project, request.parent)
        if len(request.digests) > 100_000:
            raise InvalidArgument(f"{len(request.digests)} digests in one call; at most 100000")
        missing = await self.run(self.catalog.content.missing, list(request.digests), self.settings.gc_grace_seconds)
        return rpc.FindMissingChunksResponse(missing_digests=missing)

    async def UploadChunks(  # type: ignore[override]  # registered with its own deserializer
        self, request_iterator: AsyncIterator[Upload], context: Context
    ) -> rpc.UploadChunksResponse:
        """Its requests come read by `uploads.parse_upload`: a pack's data is a view of the message."""
        writer = self.catalog.content.writer()
        received = 0
        received_bytes = 0
        first = True
        project = ""
        async for message in request_iterator:
            if first:
                await self.run(self.catalog.get_project, message.parent)
                project = project_of(message.parent)
                first = False
            if message.chunks:
                received += len(message.chunks)
                received_bytes += sum(len(c.data) for c in message.chunks)
                await self.run(writer.add_many, [(c.digest, c.data) for c in message.chunks])
            if message.has_pack:
                received += len(message.digests)
                received_bytes += len(message.data)
                await self.run(writer.add_packed, message.digests, message.sizes, message.data)
        await self.run(writer.flush)
        if self.transfers is not None and project:
            self.transfers.received.labels(project).inc(received_bytes)
            self.transfers.stored.labels(project).inc(writer.stored_bytes)
        return rpc.UploadChunksResponse(
            received_chunks=received, stored_chunks=writer.stored_chunks, stored_bytes=writer.stored_bytes
        )

    async def ReadChunks(
        self, request: rpc.ReadChunksRequest, context: Context
    ) -> AsyncIterator[rpc.ReadChunksResponse]:
        resolved = await self.run(self.pins.target, request.name)
        digests = list(request.digests)
        await self.run(self._check_chunks_of, resolved, digests)
        chunks = self.catalog.content.reader.read(digests, self._corruption(resolved))
        while True:
            got = await self.run(_take_bytes, chunks, _RESPONSE_BYTES)
            if not got:
                break
            self._sent(request.name, sum(len(data) for _, data in got))
            yield rpc.ReadChunksResponse(chunks=[rpc.Chunk(digest=d, data=data) for d, data in got])

    # Versions -------------------------------------------------------------------------------

    async def CreateVersion(self, request: rpc.CreateVersionRequest, context: Context) -> pb.DatasetVersion:
        request.version.author = acting_as(request.version.author)
        resolved = await self.run(
            create_version,
            self.catalog,
            request.parent,
            request.version,
            list(request.manifest_chunks),
            request.manifest_digest,
            request.rebase,
        )
        return convert.version(resolved)

    async def GetVersion(self, request: rpc.GetVersionRequest, context: Context) -> pb.DatasetVersion:
        return convert.version(await self.run(self.catalog.get_version, request.name))

    async def ListVersions(self, request: rpc.ListVersionsRequest, context: Context) -> rpc.ListVersionsResponse:
        rows, token = await self.run(self.catalog.list_versions, request.parent, request.page_size, request.page_token)
        return rpc.ListVersionsResponse(versions=[convert.version(r) for r in rows], next_page_token=token)

    async def DeleteVersion(self, request: rpc.DeleteVersionRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.catalog.delete_version, request.name, request.force)
        return empty_pb2.Empty()

    async def ListFiles(self, request: rpc.ListFilesRequest, context: Context) -> rpc.ListFilesResponse:
        holder = await self.run(self.pins.target, request.name)
        files, token, name = await self.run(list_files, self.catalog, holder, request)
        return rpc.ListFilesResponse(files=files, next_page_token=token, version=name)

    async def ReadFile(self, request: rpc.ReadFileRequest, context: Context) -> AsyncIterator[rpc.ReadFileResponse]:
        resolved = await self.run(self.pins.target, request.name)
        loaded = await self.run(self.catalog.manifest, resolved)
        entry = loaded.entry(request.path)
        if entry is None:
            raise not_found_file(request.path, resolved.name)
        pieces = self.catalog.content.read_range(entry, request.offset, request.length, self._corruption(resolved))
        first = True
        while True:
            got = await self.run(_take, pieces, 4)
            if not got and not first:
                break
            data = b"".join(got)
            self._sent(request.name, len(data))
            if first:
                yield rpc.ReadFileResponse(data=data, file_size_bytes=entry.size_bytes, file_digest=entry.digest)
            else:
                yield rpc.ReadFileResponse(data=data)
            first = False
            if not got:
                break

    async def DiffVersions(self, request: rpc.DiffVersionsRequest, context: Context) -> rpc.DiffVersionsResponse:
        return await self.run(diff_versions, self.catalog, request.name, request.other)

    # Artifacts and pins -----------------------------------------------------------------------

    async def CreateArtifact(self, request: rpc.CreateArtifactRequest, context: Context) -> pb.Artifact:
        resolved = await self.run(
            self.artifacts.create, request.parent, list(request.manifest_chunks), request.manifest_digest
        )
        return convert.artifact(resolved)

    async def GetArtifact(self, request: rpc.GetArtifactRequest, context: Context) -> pb.Artifact:
        return convert.artifact(await self.run(self.artifacts.get, request.name))

    async def DeleteArtifact(self, request: rpc.DeleteArtifactRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.artifacts.delete, request.name, request.force)
        return empty_pb2.Empty()

    async def CreatePin(self, request: rpc.CreatePinRequest, context: Context) -> pb.Pin:
        row, target = await self.run(self.pins.create, request.parent, request.pin.owner)
        return convert.pin(row, target)

    async def BatchCreatePins(
        self, request: rpc.BatchCreatePinsRequest, context: Context
    ) -> rpc.BatchCreatePinsResponse:
        # `projects/-` (AIP-159): the targets may be in any projects.
        project = (
            None
            if request.parent == "projects/-"
            else parse_name(request.parent, "projects/{project}", "parent")["project"]
        )
        pairs = [(r.parent, r.pin.owner) for r in request.requests]
        created = await self.run(self.pins.create_many, pairs, project)
        return rpc.BatchCreatePinsResponse(pins=[convert.pin(row, target) for row, target in created])

    async def ListPins(self, request: rpc.ListPinsRequest, context: Context) -> rpc.ListPinsResponse:
        rows, token, target = await self.run(self.pins.list, request.parent, request.page_size, request.page_token)
        return rpc.ListPinsResponse(pins=[convert.pin(r, target) for r in rows], next_page_token=token)

    async def DeletePin(self, request: rpc.DeletePinRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.pins.delete, request.name)
        return empty_pb2.Empty()

    # Tags -----------------------------------------------------------------------------------

    async def CreateTag(self, request: rpc.CreateTagRequest, context: Context) -> pb.Tag:
        row, dataset, number = await self.run(
            self.tags.create, request.parent, request.tag_id, request.tag.version, acting_as(request.tag.author)
        )
        return convert.tag(parse_name(request.parent, DATASET, "parent")["project"], dataset, row, number)

    async def GetTag(self, request: rpc.GetTagRequest, context: Context) -> pb.Tag:
        row, dataset, number = await self.run(self.tags.get, request.name)
        return convert.tag(request.name.split("/")[1], dataset, row, number)

    async def ListTags(self, request: rpc.ListTagsRequest, context: Context) -> rpc.ListTagsResponse:
        rows, token = await self.run(self.tags.list, request.parent, request.page_size, request.page_token)
        parts = parse_name(request.parent, DATASET, "parent")
        _, dataset = await self.run(self.catalog.get_dataset, request.parent)
        tags = [convert.tag(parts["project"], dataset, row, number) for row, number in rows]
        return rpc.ListTagsResponse(tags=tags, next_page_token=token)

    async def UpdateTag(self, request: rpc.UpdateTagRequest, context: Context) -> pb.Tag:
        if request.update_mask.paths and set(request.update_mask.paths) != {"version"}:
            raise InvalidArgument("update_mask of a tag may only name `version`", metadata={"field": "update_mask"})
        row, dataset, number = await self.run(
            self.tags.move, request.tag.name, request.tag.version, acting_as(request.tag.author)
        )
        return convert.tag(request.tag.name.split("/")[1], dataset, row, number)

    async def DeleteTag(self, request: rpc.DeleteTagRequest, context: Context) -> empty_pb2.Empty:
        await self.run(self.tags.delete, request.name, "")
        return empty_pb2.Empty()

    async def ListTagEvents(self, request: rpc.ListTagEventsRequest, context: Context) -> rpc.ListTagEventsResponse:
        rows, token = await self.run(self.tags.events, request.parent, request.page_size, request.page_token)
        parts = parse_name(request.parent, DATASET, "parent")
        events = [convert.tag_event(parts["project"], parts["dataset"], r) for r in rows]
        return rpc.ListTagEventsResponse(events=events, next_page_token=token)

    # Operations -----------------------------------------------------------------------------

    async def GetStorageUsage(
        self, request: rpc.GetStorageUsageRequest, context: Context
    ) -> rpc.GetStorageUsageResponse:
        total, datasets = await self.run(storage_usage, self.catalog, request.name)
        return rpc.GetStorageUsageResponse(project=convert.usage(total), datasets=[convert.usage(d) for d in datasets])

    async def GarbageCollect(self, request: rpc.GarbageCollectRequest, context: Context) -> rpc.GarbageCollectResponse:
        period = request.grace_period
        if request.HasField("grace_period") and not (
            0 <= period.seconds <= _MAX_GRACE_SECONDS and 0 <= period.nanos < 10**9
        ):
            raise InvalidArgument(
                f"grace_period is {period.seconds}s {period.nanos}ns: give 0 to {_MAX_GRACE_SECONDS} seconds "
                "(100 years) and 0 to 999,999,999 nanoseconds",
                metadata={"field": "grace_period"},
            )
        given = request.HasField("grace_period")
        grace = period.seconds + period.nanos / 1e9 if given else self.settings.gc_grace_seconds
        report = await self.run(garbage_collect, self.catalog, grace, request.dry_run)
        return rpc.GarbageCollectResponse(
            deleted_chunks=report.deleted_chunks, freed_bytes=report.freed_bytes, rewritten_packs=report.rewritten_packs
        )

    def _sent(self, name: str, size: int) -> None:
        if self.transfers is not None and size:
            self.transfers.sent.labels(project_of(name)).inc(size)

    def _check_chunks_of(self, resolved: HasManifest, digests: list[bytes]) -> None:
        """Refuse digests that are not chunks of the version or artifact read: a chunk is read as part
        of something the caller may read, never by its digest alone."""
        known = self.catalog.manifest(resolved).chunk_digests
        foreign = [d for d in digests if d not in known]
        if foreign:
            raise InvalidArgument(
                f"{len(foreign)} of the digests are not chunks of {resolved.label} "
                f"(first: {foreign[0].hex() or 'empty'}); list its files for their chunks",
                metadata={"field": "digests", "value": foreign[0].hex()},
            )

    def _corruption(self, resolved: HasManifest) -> Any:
        def corrupted(digest: bytes) -> DataLoss:
            try:
                path = self.catalog.manifest(resolved).containing(digest)
            except DataLoss:
                path = "<manifest>"
            return DataLoss(
                f"stored bytes of {resolved.label} file {path!r} are corrupted or missing (chunk {digest.hex()[:16]})",
                metadata={"resource": resolved.name, "path": path, "chunk": digest.hex()},
            )

        return corrupted
