"""The answer to CreateModelVersion is the version as it is stored and read back."""

from __future__ import annotations

from pathlib import Path

from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import store_artifact
from atelier.registry.v1 import resources_pb2 as pb
from tests.integration.registry.helpers import MODEL, trained


def test_the_created_version_equals_the_stored_one(
    stack: tuple[DataClient, RegistryClient], tmp_path: Path, digits: str
) -> None:
    data, registry = stack
    from_run = trained(data, registry, tmp_path, "0.01", 0.93)
    (tmp_path / "tuned.pt").write_bytes(b"tuned weights")
    artifact = store_artifact(data, "lab", tmp_path / "tuned.pt")
    inline = registry.create_version(
        MODEL,
        pb.ModelVersion(
            artifact=artifact.name,
            artifact_digest=artifact.digest,
            format=pb.MODEL_FORMAT_STATE_DICT,
            module_class="digits.model:Net",
            description="fine-tuned",
            metrics={"val_accuracy": 0.95, "loss": 0.2},
            tags={"stage": "tuned"},
            author="ana",
            lineage=pb.Lineage(
                datasets=["digits@latest"], params={"lr": "0.001"}, parent_model_version=f"{MODEL}/versions/v1"
            ),
        ),
    )

    for created in (from_run, inline):
        assert created == registry.get_version(created.name)
    assert inline.number == 2
    assert list(inline.lineage.datasets) == [digits]
    assert inline.lineage.parent_model_version == from_run.name
    assert inline.create_time.seconds > 0
    bare = pb.ModelVersion(artifact=artifact.name, format=pb.MODEL_FORMAT_TORCHSCRIPT)
    created = registry.create_version(MODEL, bare)
    assert not created.HasField("signature")
    assert created == registry.get_version(created.name)
