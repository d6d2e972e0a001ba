"""The Atelier processes a deployment of deploy/ runs, read from its files: the module each runs, its
environment and the ports it declares. Compose and Kubernetes say the same things in different shapes;
the tests check both through this one model.

An environment value from a secret (`${ATELIER_DATA_TOKEN}` in Compose, a `secretKeyRef` in Kubernetes) is
kept as `Secret(key)`; the secret's lines come from `atelier iam deployment-secrets` (and, for Kubernetes,
databases.env).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from atelier.runtime.settings import ServiceSettings
from atelier.stack.identities import DEPLOYMENT_ENV, write_deployment_secrets
from atelier.stack.services import SERVICES, env_var
from gateway.iam.settings import IamSettings
from gateway.settings import GatewaySettings
from services.data.settings import DataSettings
from services.inference.settings import InferenceSettings
from services.monitor.settings import MonitorSettings
from services.registry.settings import RegistrySettings
from services.scheduler.agent.settings import AgentSettings
from services.scheduler.settings import SchedulerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
SLURM = DEPLOY / "slurm"

SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "services.data": (DataSettings,),
    "services.registry": (RegistrySettings,),
    "services.scheduler": (SchedulerSettings,),
    "services.inference": (InferenceSettings,),
    "services.monitor": (MonitorSettings,),
    "gateway": (GatewaySettings, IamSettings),  # the gateway runs the IAM service inside
    "services.scheduler.agent": (AgentSettings,),
}
"""What each module's process reads from its environment."""


@dataclass(frozen=True)
class Secret:
    key: str


Value = str | Secret


@dataclass
class Process:
    name: str
    module: str
    env: dict[str, Value]
    ports: set[int] = field(default_factory=set)
    """Ports the deployment declares for it (container ports, or the ports its health check probes)."""
    health: tuple[int, str] | None = None
    """The port and `grpc.health.v1` service its health check asks about, if it checks gRPC health."""


def environment_names(settings_type: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads."""
    prefix = str(settings_type.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, info in settings_type.model_fields.items():
        alias = info.validation_alias
        if alias is None:
            names.add((prefix + name).upper())
            continue
        choices = getattr(alias, "choices", [alias])
        names.update(str(choice).upper() for choice in choices if str(choice).upper().startswith("ATELIER_"))
    return names


def readable_names(module: str) -> set[str]:
    """Every ATELIER_ variable the process of `module` reads: its settings', and where the others are."""
    names = set().union(*(environment_names(t) for t in SETTINGS[module]))
    # Read by the clients every process holds: where the others are, and its own token.
    names |= {env_var(s.name, "address") for s in SERVICES} | {"ATELIER_ADDRESS", "ATELIER_HOME", "ATELIER_TOKEN"}
    names.add(env_var("inference", "http"))  # the gateway's way to the inference service's REST v2
    return names


def listening_ports(process: Process, secrets: dict[str, str]) -> dict[str, int]:
    """The ports the process listens on by its settings (`port`, `http_port`, `metrics_port`), by field."""
    found: dict[str, int] = {}
    for settings_type in SETTINGS[process.module]:
        prefix = str(settings_type.model_config.get("env_prefix", ""))
        for field_name in ("port", "http_port", "metrics_port"):
            raw = resolve(process.env.get(f"{prefix}{field_name}".upper()), secrets)
            if raw is not None and int(raw) > 0:
                found[field_name] = int(raw)
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines (blank lines and `#` comments skipped), as Compose's env files and kubectl read them."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def deployment_secrets(directory: Path) -> dict[str, str]:
    """What `atelier iam deployment-secrets` writes in `directory`, with databases.env's example lines."""
    write_deployment_secrets(directory)
    return read_env_file(directory / DEPLOYMENT_ENV) | read_env_file(KUBERNETES / "databases.env.example")


def resolve(value: Value | None, secrets: dict[str, str]) -> str | None:
    if isinstance(value, Secret):
        return secrets[value.key]
    return value


# Compose -------------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_processes() -> list[Process]:
    """The Atelier containers of deploy/compose (those running `python -m <module>`)."""
    processes = []
    for name, service in compose_file()["services"].items():
        command = service.get("command", [])
        if not command or command[0] not in SETTINGS:
            continue
        env: dict[str, Value] = {}
        for key, raw in service.get("environment", {}).items():
            text = str(raw)
            match = _INTERPOLATION.fullmatch(text)
            env[key] = Secret(match.group(1)) if match else text
        ports = set()
        health = None
        test = service.get("healthcheck", {}).get("test", [])
        if "atelier.stack.probe" in test:
            target = test[test.index("atelier.stack.probe") + 1 :]
            health = (int(target[0].rpartition(":")[2]), target[1] if len(target) > 1 else "")
            ports.add(health[0])
        for mapping in service.get("ports", []):
            ports.add(int(str(mapping).split("#")[0].rpartition(":")[2]))
        processes.append(Process(name, command[0], env, ports, health))
    return processes


def compose_secret_text(text: str, secrets: dict[str, str]) -> str:
    """`text` with Compose's `${NAME}` interpolated from `secrets`."""
    return _INTERPOLATION.sub(lambda match: secrets[match.group(1)], text)


# Kubernetes ----------------------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return loaded


def kubernetes_documents() -> list[dict[str, Any]]:
    """Every object of the manifests kustomization.yaml lists."""
    documents = []
    for resource in kustomization()["resources"]:
        documents += [d for d in yaml.safe_load_all((KUBERNETES / resource).read_text()) if d]
    return documents


def kubernetes_processes() -> list[Process]:
    """The Atelier containers of deploy/kubernetes' Deployments and DaemonSets, their environment
    resolved through the ConfigMaps they load."""
    documents = kubernetes_documents()
    config_maps = {d["metadata"]["name"]: d["data"] for d in documents if d["kind"] == "ConfigMap"}
    processes = []
    for document in documents:
        if document["kind"] not in ("Deployment", "DaemonSet"):
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            module = container["args"][0]
            env: dict[str, Value] = {}
            for source in container.get("envFrom", []):
                env.update(config_maps[source["configMapRef"]["name"]])
            for item in container.get("env", []):
                if "value" in item:
                    env[item["name"]] = str(item["value"])
                elif "secretKeyRef" in item.get("valueFrom", {}):
                    env[item["name"]] = Secret(item["valueFrom"]["secretKeyRef"]["key"])
                else:  # from the pod's own fields (the node's address): a stand-in value
                    env[item["name"]] = "10.0.0.1"
            ports = {int(p["containerPort"]) for p in container.get("ports", [])}
            probe = container.get("startupProbe", {}).get("grpc")
            health = (int(probe["port"]), str(probe.get("service", ""))) if probe else None
            processes.append(Process(document["metadata"]["name"], module, env, ports, health))
    return processes


# Slurm ---------------------------------------------------------------------------------------------


def slurm_processes() -> list[Process]:
    """The scheduler of deploy/slurm: the module its systemd unit starts, with the example environment."""
    unit = (SLURM / "atelier-scheduler.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    module = exec_start.split(" -m ", 1)[1].split()[0]
    env: dict[str, Value] = {}
    for line in unit.splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    env.update(read_env_file(SLURM / "scheduler.env.example"))
    port = int(str(env["ATELIER_SCHEDULER_PORT"]))
    return [Process("scheduler", module, env, {port}, (port, ""))]


def service_settings(process: Process, secrets: dict[str, str]) -> list[BaseSettings]:
    """The process's settings as it reads them from this environment (a value it refuses raises): each
    settings class built as the process builds it, with the process's variables as the only ATELIER_ ones."""
    environment = {key: resolve(value, secrets) or "" for key, value in process.env.items()}
    saved = {key: value for key, value in os.environ.items() if key.startswith("ATELIER_")}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update(environment)
        return [settings_type() for settings_type in SETTINGS[process.module]]
    finally:
        for key in environment:
            os.environ.pop(key, None)
        os.environ.update(saved)


def is_service(settings: BaseSettings) -> bool:
    return isinstance(settings, ServiceSettings)
