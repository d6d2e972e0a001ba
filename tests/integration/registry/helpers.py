"""Registering model versions the way a training script would."""

from __future__ import annotations

from pathlib import Path

from atelier.client import DataClient, RegistryClient
from atelier.datasets.push import store_artifact
from atelier.registry.v1 import resources_pb2 as pb

MODEL = "projects/lab/models/digits"
EXPERIMENT = "projects/lab/experiments/digits"


def trained(
    data: DataClient, registry: RegistryClient, tmp_path: Path, lr: str, accuracy: float, dataset: str = "digits"
) -> pb.ModelVersion:
    """A run on `dataset@latest` that logs `val_accuracy`, registered as a version of MODEL."""
    run = registry.create_run(
        EXPERIMENT,
        pb.Run(
            params={"lr": lr},
            inputs=[f"{dataset}@latest"],
            code=pb.CodeVersion(git_remote="git@example:lab/digits.git", commit="abc123", branch="main"),
            environment=pb.Environment(python_version="3.11.7", torch_version="2.13.0"),
            command=["python", "train.py", f"--lr={lr}"],
        ),
    )
    registry.log(run.name, metrics=[pb.MetricPoint(key="val_accuracy", step=10, value=accuracy)])
    weights = tmp_path / f"model-{lr}.pt"
    weights.write_bytes(f"weights for lr={lr}".encode())
    artifact = store_artifact(data, "lab", weights)
    signature = pb.ModelSignature(
        inputs=[pb.TensorSpec(name="image", datatype=pb.TENSOR_DATATYPE_FP32, shape=[-1, 1, 8, 8])],
        outputs=[pb.TensorSpec(name="logits", datatype=pb.TENSOR_DATATYPE_FP32, shape=[-1, 10])],
    )
    version = pb.ModelVersion(
        artifact=artifact.name,
        format=pb.MODEL_FORMAT_TORCHSCRIPT,
        signature=signature,
        lineage=pb.Lineage(run=run.name),
        author="ana",
    )
    return registry.create_version(MODEL, version)
