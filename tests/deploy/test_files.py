"""The files of deploy/ are what their tools accept: Kubernetes objects valid against the API's schemas,
a kustomization naming every manifest, a Compose file whose references resolve, Prometheus configs that
promtool accepts."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.processes import COMPOSE, DEPLOY, KUBERNETES, compose_file, kubernetes_documents, kustomization

KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes the manifests are for (gRPC probes are GA since 1.27)."""


def test_every_kubernetes_object_is_valid() -> None:
    documents = kubernetes_documents()
    assert {d["kind"] for d in documents} >= {"Namespace", "ConfigMap", "Deployment", "Service", "DaemonSet"}
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_refused() -> None:
    """The validation above is strict: a field the API does not have fails it."""
    deployment = copy.deepcopy(next(d for d in kubernetes_documents() if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["enviroment"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_and_the_secrets_it_needs() -> None:
    listed = set(kustomization()["resources"])
    assert listed == {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    generated = {g["name"] for g in kustomization()["secretGenerator"]}
    referenced = set()
    for document in kubernetes_documents():
        for key_ref in _find(document, "secretKeyRef"):
            referenced.add(key_ref["name"])
        for volume in _find(document, "secret"):
            referenced.add(volume["secretName"])
    assert referenced == generated


def test_every_kubernetes_object_is_in_the_namespace_or_the_namespace_itself() -> None:
    assert kustomization()["namespace"] == "atelier"
    for document in kubernetes_documents():
        assert "namespace" not in document["metadata"], document["metadata"]["name"]


def test_services_select_the_pods_of_their_name_and_reach_declared_ports() -> None:
    documents = kubernetes_documents()
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in documents if d["kind"] in ("Deployment", "DaemonSet")}
    for service in (d for d in documents if d["kind"] == "Service"):
        name = service["metadata"]["name"]
        template = pods[name]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        declared = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= declared, name


def test_compose_references_resolve() -> None:
    compose = compose_file()
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on {dependency}"
        for mount in service.get("volumes", []):
            source = str(mount).split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).resolve().exists(), f"{name} mounts {source}"
            else:
                assert source in compose["volumes"], f"{name} mounts the undeclared volume {source}"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")  # where deployment-secrets writes, ignored by git


def test_the_compose_build_uses_the_dockerfile() -> None:
    build = compose_file()["x-atelier"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert dockerfile == DEPLOY / "container" / "Dockerfile"
    text = dockerfile.read_text()
    for copied in ("atelier", "services", "gateway", "constraints.txt", "pyproject.toml", "README.md"):
        assert re.search(rf"^COPY [^\n]*\b{re.escape(copied)}\b", text, re.MULTILINE), copied
        assert (context / copied).exists()


def test_the_databases_compose_creates_are_the_ones_its_services_use() -> None:
    created = set()
    for line in (COMPOSE.parent / "postgres-init.sql").read_text().splitlines():
        if line.startswith("CREATE DATABASE "):
            created.add(line.removeprefix("CREATE DATABASE ").rstrip(";"))
    used = set()
    for service in compose_file()["services"].values():
        for key, value in service.get("environment", {}).items():
            if key.endswith("_DATABASE_URL"):
                used.add(str(value).rpartition("/")[2])
    assert used == created


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (make prometheus)")
def test_the_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    config: dict[str, Any] = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    # Inside the container the rules are mounted at /etc/prometheus/rules; here they are in deploy/.
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {target["labels"]["job"] for scrape in config["scrape_configs"] for target in scrape["static_configs"]}
    assert jobs == {"data", "registry", "scheduler", "inference", "monitor", "gateway", "agent"}


def _find(node: Any, key: str) -> list[dict[str, Any]]:
    """Every mapping under `key` anywhere in `node`."""
    found = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key and isinstance(value, dict):
                found.append(value)
            found += _find(value, key)
    elif isinstance(node, list):
        for item in node:
            found += _find(item, key)
    return found


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_kustomization_builds_with_its_secrets(tmp_path: Path) -> None:
    """`kubectl kustomize` (what `kubectl apply -k` applies) builds the manifests with the secrets that
    deployment-secrets and databases.env give, every object valid and in the namespace."""
    from atelier.stack.identities import write_deployment_secrets

    copy_of = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy_of, ignore=shutil.ignore_patterns("secrets"))
    write_deployment_secrets(copy_of / "secrets")
    shutil.copy(copy_of / "databases.env.example", copy_of / "secrets" / "databases.env")
    built = subprocess.run(
        ["kubectl", "kustomize", str(copy_of)], capture_output=True, text=True, timeout=120, check=False
    )
    assert built.returncode == 0, built.stderr
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "atelier", document["metadata"]["name"]
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "atelier"
    secrets = {d["metadata"]["name"]: d["data"] for d in documents if d["kind"] == "Secret"}
    assert {"ATELIER_DATA_TOKEN", "ATELIER_AGENT_TOKEN", "service-tokens.json"} <= set(secrets["atelier-tokens"])
    assert "ATELIER_IAM_DATABASE_URL" in secrets["atelier-databases"]
