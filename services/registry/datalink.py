"""What the registry needs from the data service, through its public gRPC API."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

from atelier.client import DataClient
from atelier.data.v1 import data_service_pb2 as data_rpc
from atelier.data.v1 import resources_pb2 as data_pb
from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from atelier.names import parse_dataset_ref, parse_name
from atelier.runtime.auth import Role, current_identity

ARTIFACT = "projects/{project}/artifacts/{artifact}"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def check_artifact_name(name: str, field: str) -> None:
    """INVALID_ARGUMENT unless `name` names a data service artifact by its whole digest, as the data
    service gives it: `projects/{project}/artifacts/{digest}`, 64 lowercase hex characters."""
    if not _DIGEST.fullmatch(parse_name(name, ARTIFACT, field)["artifact"]):
        raise InvalidArgument(
            f"{field} {name!r} must be projects/{{project}}/artifacts/{{digest}} with the artifact's whole digest "
            "(64 lowercase hex characters)",
            metadata={"field": field, "value": name},
        )


class DataLink:
    """Validates dataset versions and artifacts, and pins what lineage refers to."""

    def __init__(self, client: DataClient) -> None:
        self.client = client
        # Canonical names never change meaning (`vN`, content-addressed artifacts): once checked,
        # they need not be asked about again. References like `latest` or tags are always asked.
        self._known: set[str] = set()
        self._sizes: dict[str, int] = {}  # of the artifacts known

    def known(self, name: str) -> bool:
        """Whether `name` is a canonical dataset version or artifact name checked already, and the
        caller may read it: with access control on, a name another caller's check left here is asked
        about again under this caller's credentials unless this caller may read its project (the
        registry pins lineage as itself, so this is where a caller's access to it is checked)."""
        return name in self._known and _readable(name)

    def dataset_version(self, reference: str, project: str) -> str:
        """The canonical name (`.../versions/vN`) of a dataset version reference such as `digits@v2`,
        `vision/digits@production` or a full name; FAILED_PRECONDITION when it does not exist."""
        if self.known(reference):
            return reference
        try:
            ref = parse_dataset_ref(reference, project)
        except InvalidArgument as error:
            raise InvalidArgument(f"invalid dataset version {reference!r}: {error}") from error
        try:
            name = self.client.get_version(ref.version_name).name
            self._known.add(name)
            return name
        except NotFound as error:
            raise FailedPrecondition(
                f"unknown dataset version {reference!r}: {error}", metadata={"dataset": reference}
            ) from error

    def artifact(self, name: str) -> str:
        """The canonical name of an artifact; FAILED_PRECONDITION when the data service lacks it."""
        return self.artifact_with_size(name)[0]

    def artifact_with_size(self, name: str) -> tuple[str, int]:
        """An artifact's canonical name and the sum of its files' sizes; FAILED_PRECONDITION when the
        data service lacks it."""
        if self.known(name) and name in self._sizes:
            return name, self._sizes[name]
        try:
            found = self.client.get_artifact(name)
        except NotFound as error:
            raise FailedPrecondition(f"unknown artifact {name!r}: {error}", metadata={"artifact": name}) from error
        self._known.add(found.name)
        self._sizes[found.name] = found.total_size_bytes
        return found.name, found.total_size_bytes

    def pin(self, target: str, owner: str) -> str:
        return self.client.pin(target, owner).name

    def pin_groups(self, project: str, groups: Sequence[tuple[list[str], str]]) -> list[list[str]]:
        """Pin each group's targets for its owner, every group in one call, all or none; the pin
        names of each group, in order."""
        requests = [
            data_rpc.CreatePinRequest(parent=target, pin=data_pb.Pin(owner=owner))
            for targets, owner in groups
            for target in targets
        ]
        if not requests:
            return [[] for _ in groups]
        # A lineage may name datasets of other projects (shared data): then the call names them all.
        inside = all(r.parent.startswith(f"projects/{project}/") for r in requests)
        parent = f"projects/{project}" if inside else "projects/-"
        request = data_rpc.BatchCreatePinsRequest(parent=parent, requests=requests)
        pins = iter(self.client.call(self.client.stub.BatchCreatePins, request).pins)
        return [[next(pins).name for _ in targets] for targets, _ in groups]

    def unpin(self, pin: str) -> None:
        with contextlib.suppress(NotFound):
            self.client.unpin(pin)


def _readable(name: str) -> bool:
    """Whether the caller (none with access control off) may read the project `name` is in."""
    identity = current_identity.get()
    if identity is None:
        return True
    project = name.split("/", 2)[1] if name.startswith("projects/") else ""
    return bool(project) and identity.role_in(project) >= Role.ROLE_VIEWER
