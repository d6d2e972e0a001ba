"""With access control on, the registry pins a version's lineage as itself, and only for callers who
may read what the lineage names: a name another caller's registration left checked is not a pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atelier.client import DataClient, RegistryClient
from atelier.client.channel import connect
from atelier.datasets.push import push, store_artifact
from atelier.errors import PermissionDenied
from atelier.iam.v1 import resources_pb2 as res
from atelier.names import parse_dataset_ref
from atelier.registry.v1 import resources_pb2 as pb
from tests.integration.data.helpers import write_tree
from tests.integration.iam.conftest import Iam, secured

MODEL = "projects/vision/models/digits"


def test_lineage_is_pinned_for_readers_of_it_and_refused_to_others(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam
) -> None:
    from services.data.server import build as build_data
    from services.data.settings import DataSettings
    from services.registry.server import build as build_registry
    from services.registry.settings import RegistrySettings

    data_address = serve(
        lambda: build_data(secured(DataSettings, tmp_path / "data", iam, object_store=str(tmp_path / "o")))
    )
    registry_address = serve(
        lambda: build_registry(secured(RegistrySettings, tmp_path / "reg", iam, data_address=data_address))
    )
    admin_data = DataClient(connect(data_address, token=iam.admin_token))
    admin = RegistryClient(connect(registry_address, token=iam.admin_token))
    write_tree(tmp_path / "shared", {"x.csv": b"a,1\n"})
    shared = push(admin_data, tmp_path / "shared", parse_dataset_ref("digits", "shared")).version.name
    (tmp_path / "w.pt").write_bytes(b"weights")
    artifact = store_artifact(admin_data, "vision", tmp_path / "w.pt").name

    def version() -> pb.ModelVersion:
        return pb.ModelVersion(
            artifact=artifact, format=pb.MODEL_FORMAT_TORCHSCRIPT, lineage=pb.Lineage(datasets=[shared])
        )

    # The admin's registration leaves the dataset version checked in the registry.
    assert list(admin.create_version(MODEL, version()).lineage.datasets) == [shared]

    # A member of vision who may not read project shared is refused, though the name is known.
    outsider = RegistryClient(connect(registry_address, token=iam.user("eve", {"vision": res.ROLE_MEMBER})))
    with pytest.raises(PermissionDenied, match="shared"):
        outsider.create_version(MODEL, version())

    # A member of vision who only views project shared registers, and the pin is made (by the
    # registry's own service account: a viewer could not pin there).
    reader = RegistryClient(
        connect(registry_address, token=iam.user("ada", {"vision": res.ROLE_MEMBER, "shared": res.ROLE_VIEWER}))
    )
    created = reader.create_version(MODEL, version())
    assert created.number == 2
    owners = {pin.owner for pin in admin_data.list_pins(shared)}
    assert {f"{MODEL}/versions/v1", f"{MODEL}/versions/v2"} <= owners
    for client in (admin_data, admin, outsider, reader):
        client.close()
