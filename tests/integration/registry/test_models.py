"""Model versions: lineage from runs, pins in the data service, references, search, gated aliases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from atelier.client import DataClient, RegistryClient
from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from atelier.registry.v1 import resources_pb2 as pb
from tests.integration.registry.helpers import MODEL, trained


def test_version_takes_lineage_from_its_run_and_pins_it(
    stack: tuple[DataClient, RegistryClient], tmp_path: Path, digits: str
) -> None:
    data, registry = stack
    version = trained(data, registry, tmp_path, "0.01", 0.93)

    assert version.name == f"{MODEL}/versions/v1"
    assert list(version.lineage.datasets) == [digits]
    assert version.lineage.code.commit == "abc123"
    assert dict(version.lineage.params) == {"lr": "0.01"}
    assert version.metrics["val_accuracy"] == pytest.approx(0.93)
    with pytest.raises(FailedPrecondition, match=f"referenced by {MODEL}/versions/v1"):
        data.delete_version(digits)
    with pytest.raises(FailedPrecondition, match="referenced by"):
        data.delete_artifact(version.artifact)


def test_references_and_best_version(stack: tuple[DataClient, RegistryClient], tmp_path: Path, digits: str) -> None:
    data, registry = stack
    for lr, accuracy in [("0.1", 0.81), ("0.01", 0.95), ("0.001", 0.90)]:
        trained(data, registry, tmp_path, lr, accuracy)

    assert registry.get_version(f"{MODEL}/versions/latest").number == 3
    best = registry.best_version(MODEL, "val_accuracy")
    assert best is not None
    assert best.number == 2
    constrained = registry.best_version(MODEL, "val_accuracy", filter="params.lr < 0.005")
    assert constrained is not None
    assert constrained.number == 3
    by_dataset = list(registry.list_versions("projects/lab/models/-", filter='dataset = "digits@v1"'))
    assert len(by_dataset) == 3
    found = list(registry.list_versions(MODEL, filter="metrics.val_accuracy > 0.85 and params.lr < 0.05"))
    assert sorted(v.number for v in found) == [2, 3]
    with pytest.raises(InvalidArgument, match=r"position 23 \(.and.\)"):
        list(registry.list_versions(MODEL, filter="metrics.val_accuracy > and"))
    with pytest.raises(NotFound, match="no version lab/digits@v9"):
        registry.get_version(f"{MODEL}/versions/v9")
    with pytest.raises(NotFound, match="no version lab/digits@v99999999999999999999"):
        registry.get_version(f"{MODEL}/versions/v99999999999999999999")
    with pytest.raises(InvalidArgument, match="out of range: number is a 64-bit whole number"):
        list(registry.list_versions(MODEL, filter="number > 99999999999999999999"))
    with pytest.raises(InvalidArgument, match="number out of range"):
        list(registry.list_versions(MODEL, filter="metrics.val_accuracy > " + "9" * 400))


def test_gated_promotion_and_history(stack: tuple[DataClient, RegistryClient], tmp_path: Path, digits: str) -> None:
    data, registry = stack
    trained(data, registry, tmp_path, "0.1", 0.90)
    trained(data, registry, tmp_path, "0.01", 0.85)
    trained(data, registry, tmp_path, "0.001", 0.93)
    gate = "metrics.val_accuracy >= current.metrics.val_accuracy and metrics.val_accuracy > 0.8"

    registry.set_alias(MODEL, "production", "v1", gate=gate, author="ana")
    with pytest.raises(FailedPrecondition, match=r"gate failed: metrics.val_accuracy >= current.metrics.val_accuracy"):
        registry.set_alias(MODEL, "production", "v2", gate=gate, author="bo")
    moved = registry.set_alias(MODEL, "production", "v3", gate=gate, author="bo")

    assert moved.version == f"{MODEL}/versions/v3"
    assert registry.get_version(f"{MODEL}/versions/production").number == 3
    assert registry.get_model(MODEL).aliases["production"] == f"{MODEL}/versions/v3"
    events = registry.alias_events(MODEL)
    assert [(e.author, e.previous_version[-2:], e.version[-2:]) for e in events] == [
        ("bo", "v1", "v3"),
        ("ana", "", "v1"),
    ]
    with pytest.raises(FailedPrecondition, match="holds alias production"):
        registry.delete_version(f"{MODEL}/versions/v3")
    with pytest.raises(InvalidArgument, match="is not a version of projects/lab/models/digits"):
        registry.set_alias(MODEL, "staging", "projects/lab/models/other/versions/v1", gate="", author="bo")
    with pytest.raises(InvalidArgument, match="a gate compares metrics.val_accuracy with 'x': metrics are numbers"):
        registry.set_alias(MODEL, "staging", "v3", gate="metrics.val_accuracy > 'x'", author="bo")
    for unknown in ("number >= 1", "metrics.val_accuracy > current.number", "author = ana"):
        with pytest.raises(InvalidArgument, match="a gate cannot compare .*: gates compare metrics.<name>"):
            registry.set_alias(MODEL, "staging", "v3", gate=unknown, author="bo")
    registry.delete_alias(f"{MODEL}/aliases/production", author="bo")
    with pytest.raises(NotFound, match="model lab/digits has no alias 'production'; its aliases are: \\(none\\)"):
        registry.delete_alias(f"{MODEL}/aliases/production", author="bo")
    assert [(e.previous_version[-2:], e.version[-2:]) for e in registry.alias_events(MODEL)][:2] == [
        ("v3", ""),
        ("v1", "v3"),
    ]


def test_lineage_graph_and_reproduction(stack: tuple[DataClient, RegistryClient], tmp_path: Path, digits: str) -> None:
    data, registry = stack
    base = trained(data, registry, tmp_path, "0.01", 0.9)
    tuned = trained(data, registry, tmp_path, "0.001", 0.95)
    registry.delete_version(tuned.name)
    version = pb.ModelVersion(
        artifact=base.artifact,
        format=pb.MODEL_FORMAT_TORCHSCRIPT,
        lineage=pb.Lineage(run=base.lineage.run, parent_model_version=f"{MODEL}/versions/v1"),
    )
    child = registry.create_version(MODEL, version)

    graph = registry.lineage(child.name)
    kinds = {(n.kind, n.name) for n in graph.nodes}
    assert ("dataset_version", digits) in kinds
    assert ("code", "git:git@example:lab/digits.git@abc123") in kinds
    relations = {(e.relation, e.source, e.target) for e in graph.edges}
    assert ("fine_tuned_from", f"{MODEL}/versions/v1", child.name) in relations
    assert ("trained_on", digits, f"{MODEL}/versions/v1") in relations
    spec = registry.reproduction_spec(child.name)
    assert list(spec.datasets) == [digits]
    assert list(spec.command) == ["python", "train.py", "--lr=0.01"]
    assert spec.environment.torch_version == "2.13.0"


def test_bad_versions_are_refused(stack: tuple[DataClient, RegistryClient]) -> None:
    _, registry = stack
    artifact = "projects/lab/artifacts/" + "a" * 64
    with pytest.raises(InvalidArgument, match="format 0 is not one of TORCHSCRIPT"):
        registry.create_version(MODEL, pb.ModelVersion(artifact=artifact))
    with pytest.raises(InvalidArgument, match="format 42 is not one of TORCHSCRIPT"):
        registry.create_version(MODEL, pb.ModelVersion(artifact=artifact, format=42))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="metric 'a' is nan: metric values are finite numbers"):
        registry.create_version(
            MODEL, pb.ModelVersion(artifact=artifact, format=pb.MODEL_FORMAT_TORCHSCRIPT, metrics={"a": math.nan})
        )
    with pytest.raises(FailedPrecondition, match="unknown artifact"):
        registry.create_version(
            MODEL, pb.ModelVersion(artifact="projects/lab/artifacts/" + "a" * 64, format=pb.MODEL_FORMAT_TORCHSCRIPT)
        )
    for version, expected in [
        (pb.ModelVersion(lineage=pb.Lineage(params={"": "1"})), "param key '' must be 1-250 characters"),
        (pb.ModelVersion(tags={"t" * 251: "x"}), "tag key 'tt+' must be 1-250 characters"),
    ]:
        version.artifact, version.format = artifact, pb.MODEL_FORMAT_TORCHSCRIPT
        with pytest.raises(InvalidArgument, match=expected):
            registry.create_version(MODEL, version)


def test_concurrent_registrations_into_a_new_model_get_distinct_numbers(
    stack: tuple[DataClient, RegistryClient], tmp_path: Path, digits: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data, registry = stack
    first = trained(data, registry, tmp_path, "0.1", 0.5)

    def register(i: int) -> int:
        version = pb.ModelVersion(
            artifact=first.artifact, format=pb.MODEL_FORMAT_TORCHSCRIPT, metrics={"val_accuracy": i / 10}
        )
        return registry.create_version(f"projects/lab/models/fresh-{i % 2}", version).number

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(register, range(16)))
    assert sorted(numbers) == sorted([*range(1, 9), *range(1, 9)])
