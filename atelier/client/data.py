"""Client of the data service."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import grpc
from google.protobuf import duration_pb2, field_mask_pb2

from atelier.client.channel import ServiceClient, connect
from atelier.data.v1 import data_service_pb2 as rpc
from atelier.data.v1 import data_service_pb2_grpc
from atelier.data.v1 import resources_pb2 as pb
from atelier.errors import AlreadyExists, NotFound

STREAM_TIMEOUT = 3600.0
_UPLOAD_CHUNKS = "/atelier.data.v1.DataService/UploadChunks"
_PACK = b"\x1a"  # UploadChunksRequest.pack and ChunkPack.data: field 3, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def packed_upload_request(head: bytes, chunks: Sequence[tuple[bytes, bytes | memoryview]]) -> bytes:
    """The serialized `UploadChunksRequest` of `head` (a serialized request without a pack) with
    `chunks` as its pack, built in one join. Fields come in number order and `data` is the pack's
    last field, so the bytes are what protobuf's own deterministic serialization gives."""
    digests = [digest for digest, _ in chunks]
    datas = [data for _, data in chunks]
    size = sum(map(len, datas))
    # The pack without its data, then the data field appended by hand.
    front = rpc.ChunkPack(digests=digests, sizes=map(len, datas)).SerializeToString()
    if size:
        front += _PACK + _varint(size)
    return b"".join([head, _PACK, _varint(len(front) + size), front, *datas])


class DataClient(ServiceClient):
    """Typed calls of `atelier.data.v1.DataService`."""

    service = "data"

    def __init__(self, channel: grpc.Channel, timeout: float = 30.0, address: str = "") -> None:
        super().__init__(channel, timeout, address)
        self.stub = data_service_pb2_grpc.DataServiceStub(channel)
        # UploadChunks with requests serialized by `packed_upload_request`: the chunks' bytes are
        # copied once, straight into the message, rather than joined, copied into a ChunkPack and
        # copied again when it is serialized (three passes over every byte pushed).
        self._upload_serialized = channel.stream_unary(
            _UPLOAD_CHUNKS, request_serializer=None, response_deserializer=rpc.UploadChunksResponse.FromString
        )

    @classmethod
    def at(cls, address: str) -> DataClient:
        return cls(connect(address), address=address)

    # Projects and datasets ----------------------------------------------------------------------

    def create_project(self, project_id: str, description: str = "", quota_bytes: int = 0) -> pb.Project:
        project = pb.Project(description=description, quota_bytes=quota_bytes)
        return self.call(self.stub.CreateProject, rpc.CreateProjectRequest(project=project, project_id=project_id))

    def get_project(self, name: str) -> pb.Project:
        return self.call(self.stub.GetProject, rpc.GetProjectRequest(name=name))

    def set_quota(self, name: str, quota_bytes: int) -> pb.Project:
        request = rpc.UpdateProjectRequest(
            project=pb.Project(name=name, quota_bytes=quota_bytes),
            update_mask=field_mask_pb2.FieldMask(paths=["quota_bytes"]),
        )
        return self.call(self.stub.UpdateProject, request)

    def list_projects(self) -> Iterator[pb.Project]:
        return self.pages(self.stub.ListProjects, rpc.ListProjectsRequest(), "projects")

    def create_dataset(self, project: str, dataset_id: str, description: str = "") -> pb.Dataset:
        request = rpc.CreateDatasetRequest(
            parent=f"projects/{project}", dataset=pb.Dataset(description=description), dataset_id=dataset_id
        )
        return self.call(self.stub.CreateDataset, request)

    def get_dataset(self, name: str) -> pb.Dataset:
        return self.call(self.stub.GetDataset, rpc.GetDatasetRequest(name=name))

    def ensure_project(self, project: str) -> pb.Project:
        """Get the project, creating it when missing."""
        try:
            return self.get_project(f"projects/{project}")
        except NotFound:
            try:
                return self.create_project(project)
            except AlreadyExists:
                return self.get_project(f"projects/{project}")

    def ensure_dataset(self, project: str, dataset_id: str) -> pb.Dataset:
        """Get the dataset, creating it (and its project) when missing."""
        try:
            return self.get_dataset(f"projects/{project}/datasets/{dataset_id}")
        except NotFound:
            pass
        self.ensure_project(project)
        try:
            return self.create_dataset(project, dataset_id)
        except AlreadyExists:
            return self.get_dataset(f"projects/{project}/datasets/{dataset_id}")

    def list_datasets(self, project: str) -> Iterator[pb.Dataset]:
        return self.pages(self.stub.ListDatasets, rpc.ListDatasetsRequest(parent=f"projects/{project}"), "datasets")

    def delete_dataset(self, name: str, force: bool = False) -> None:
        self.call(self.stub.DeleteDataset, rpc.DeleteDatasetRequest(name=name, force=force))

    # Chunks -------------------------------------------------------------------------------------

    def find_missing(self, project: str, digests: list[bytes]) -> list[bytes]:
        request = rpc.FindMissingChunksRequest(parent=f"projects/{project}", digests=digests)
        return list(self.call(self.stub.FindMissingChunks, request, timeout=120).missing_digests)

    def upload(
        self, project: str, batches: Iterable[list[tuple[bytes, bytes | memoryview]]]
    ) -> rpc.UploadChunksResponse:
        """Send chunk batches in one UploadChunks call, each batch as one packed message (its chunks
        end to end in one buffer); they are durable once the call returns."""
        head = rpc.UploadChunksRequest(parent=f"projects/{project}").SerializeToString()
        requests = (packed_upload_request(head, batch) for batch in batches)
        response: rpc.UploadChunksResponse = self.call(self._upload_serialized, requests, timeout=STREAM_TIMEOUT)
        return response

    def read_chunks(self, version: str, digests: list[bytes]) -> Iterator[rpc.Chunk]:
        request = rpc.ReadChunksRequest(name=version, digests=digests)
        for response in self.stream(self.stub.ReadChunks, request, timeout=STREAM_TIMEOUT):
            yield from response.chunks

    # Versions -----------------------------------------------------------------------------------

    def create_version(self, request: rpc.CreateVersionRequest) -> pb.DatasetVersion:
        return self.call(self.stub.CreateVersion, request, timeout=600)

    def get_version(self, name: str) -> pb.DatasetVersion:
        return self.call(self.stub.GetVersion, rpc.GetVersionRequest(name=name))

    def list_versions(self, dataset: str, page_size: int = 0) -> Iterator[pb.DatasetVersion]:
        request = rpc.ListVersionsRequest(parent=dataset, page_size=page_size)
        return self.pages(self.stub.ListVersions, request, "versions")

    def delete_version(self, name: str, force: bool = False) -> None:
        self.call(self.stub.DeleteVersion, rpc.DeleteVersionRequest(name=name, force=force))

    def list_files(self, version: str, prefix: str = "", full: bool = False) -> Iterator[pb.FileEntry]:
        view = rpc.FILE_VIEW_FULL if full else rpc.FILE_VIEW_BASIC
        request = rpc.ListFilesRequest(name=version, prefix=prefix, page_size=10000, view=view)
        return self.pages(self.stub.ListFiles, request, "files", timeout=120)

    def read_file(self, version: str, path: str, offset: int = 0, length: int = 0) -> Iterator[bytes]:
        request = rpc.ReadFileRequest(name=version, path=path, offset=offset, length=length)
        for response in self.stream(self.stub.ReadFile, request, timeout=STREAM_TIMEOUT):
            if response.data:
                yield response.data

    def diff(self, name: str, other: str) -> rpc.DiffVersionsResponse:
        return self.call(self.stub.DiffVersions, rpc.DiffVersionsRequest(name=name, other=other), timeout=120)

    # Artifacts and pins ------------------------------------------------------------------------

    def create_artifact(self, project: str, manifest_chunks: list[pb.ChunkRef], digest: str) -> pb.Artifact:
        request = rpc.CreateArtifactRequest(
            parent=f"projects/{project}", manifest_chunks=manifest_chunks, manifest_digest=digest
        )
        return self.call(self.stub.CreateArtifact, request, timeout=600)

    def get_artifact(self, name: str) -> pb.Artifact:
        return self.call(self.stub.GetArtifact, rpc.GetArtifactRequest(name=name))

    def delete_artifact(self, name: str, force: bool = False) -> None:
        self.call(self.stub.DeleteArtifact, rpc.DeleteArtifactRequest(name=name, force=force))

    def pin(self, target: str, owner: str) -> pb.Pin:
        """Keep `target` (a dataset version or artifact) from deletion on behalf of `owner`."""
        return self.call(self.stub.CreatePin, rpc.CreatePinRequest(parent=target, pin=pb.Pin(owner=owner)))

    def pin_many(self, project: str, targets: list[str], owner: str) -> list[pb.Pin]:
        """Pin several dataset versions or artifacts of `project` for `owner`, all or none."""
        requests = [rpc.CreatePinRequest(parent=t, pin=pb.Pin(owner=owner)) for t in targets]
        request = rpc.BatchCreatePinsRequest(parent=f"projects/{project}", requests=requests)
        return list(self.call(self.stub.BatchCreatePins, request).pins)

    def list_pins(self, target: str) -> list[pb.Pin]:
        return list(self.pages(self.stub.ListPins, rpc.ListPinsRequest(parent=target), "pins"))

    def unpin(self, name: str) -> None:
        self.call(self.stub.DeletePin, rpc.DeletePinRequest(name=name))

    # Tags and operations ------------------------------------------------------------------------

    def tag(self, dataset: str, tag_id: str, version: str, author: str = "") -> pb.Tag:
        """Point `tag_id` at `version`, creating the tag or moving it."""
        tag = pb.Tag(version=version, author=author)
        try:
            return self.call(self.stub.CreateTag, rpc.CreateTagRequest(parent=dataset, tag=tag, tag_id=tag_id))
        except AlreadyExists:
            tag.name = f"{dataset}/tags/{tag_id}"
            request = rpc.UpdateTagRequest(tag=tag, update_mask=field_mask_pb2.FieldMask(paths=["version"]))
            return self.call(self.stub.UpdateTag, request)

    def list_tags(self, dataset: str) -> list[pb.Tag]:
        return list(self.call(self.stub.ListTags, rpc.ListTagsRequest(parent=dataset, page_size=1000)).tags)

    def tag_events(self, dataset: str) -> list[pb.TagEvent]:
        return list(self.call(self.stub.ListTagEvents, rpc.ListTagEventsRequest(parent=dataset, page_size=1000)).events)

    def delete_tag(self, name: str) -> None:
        self.call(self.stub.DeleteTag, rpc.DeleteTagRequest(name=name))

    def usage(self, project: str) -> rpc.GetStorageUsageResponse:
        return self.call(self.stub.GetStorageUsage, rpc.GetStorageUsageRequest(name=f"projects/{project}"), timeout=300)

    def garbage_collect(self, grace_seconds: float | None = None, dry_run: bool = False) -> rpc.GarbageCollectResponse:
        request = rpc.GarbageCollectRequest(dry_run=dry_run)
        if grace_seconds is not None:
            request.grace_period.CopyFrom(
                duration_pb2.Duration(seconds=int(grace_seconds), nanos=int((grace_seconds % 1) * 1e9))
            )
        return self.call(self.stub.GarbageCollect, request, timeout=3600)
