"""What the scheduler needs from the data service: dataset references resolved at submission."""

from __future__ import annotations

from collections.abc import Callable

from atelier.client import DataClient
from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from atelier.names import parse_dataset_ref


class DatasetLink:
    """Resolves `digits@v2`-style references to canonical version names (`.../versions/vN`), so a
    job runs on the version it was submitted with even if a tag moves before it starts."""

    def __init__(self, connect: Callable[[], DataClient]) -> None:
        self._connect = connect
        self._client: DataClient | None = None

    def resolve(self, reference: str, project: str) -> str:
        try:
            ref = parse_dataset_ref(reference, project)
        except InvalidArgument as error:
            raise InvalidArgument(f"invalid dataset version {reference!r}: {error}") from error
        if self._client is None:
            self._client = self._connect()
        try:
            return self._client.get_version(ref.version_name).name
        except NotFound as error:
            raise FailedPrecondition(
                f"unknown dataset version {reference!r}: {error}", metadata={"dataset": reference}
            ) from error
