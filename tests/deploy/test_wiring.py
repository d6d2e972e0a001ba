"""deploy/compose and deploy/kubernetes tell each process what it reads: the settings it knows, values it
accepts, ports it declares, and addresses where the process named listens."""

from __future__ import annotations

import importlib.util

import pytest

from atelier.stack.services import SERVICES
from services.scheduler.settings import SchedulerSettings
from tests.deploy.processes import (
    SETTINGS,
    Process,
    compose_processes,
    deployment_secrets,
    kubernetes_processes,
    listening_ports,
    readable_names,
    resolve,
    service_settings,
    slurm_processes,
)

DEPLOYMENTS = {"compose": compose_processes, "kubernetes": kubernetes_processes}


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return deployment_secrets(tmp_path_factory.mktemp("secrets"))


@pytest.fixture(params=sorted(DEPLOYMENTS))
def processes(request: pytest.FixtureRequest) -> list[Process]:
    return DEPLOYMENTS[request.param]()


def test_every_service_and_an_agent_run(processes: list[Process]) -> None:
    modules = sorted(p.module for p in processes)
    assert modules == sorted(
        [s.module for s in SERVICES if s.kind in ("grpc", "gateway")] + ["services.scheduler.agent"]
    )
    for process in processes:
        assert importlib.util.find_spec(f"{process.module}.__main__") is not None, process.module


def test_every_variable_is_one_the_process_reads(processes: list[Process]) -> None:
    for process in processes:
        unknown = {name for name in process.env if name.startswith("ATELIER_")} - readable_names(process.module)
        assert not unknown, f"{process.name} is given variables it does not read: {sorted(unknown)}"


def test_every_value_is_accepted(processes: list[Process], secrets: dict[str, str]) -> None:
    for process in processes:
        for settings in service_settings(process, secrets):
            if hasattr(settings, "auth"):
                assert settings.auth == "on", f"{process.name} runs without access control"


def test_services_listen_on_every_interface_on_the_ports_declared(
    processes: list[Process], secrets: dict[str, str]
) -> None:
    for process in processes:
        listening = listening_ports(process, secrets)
        if process.module == "services.scheduler.agent":
            assert listening == {"metrics_port": 9400}
            continue
        assert "port" in listening, f"{process.name} listens on a port it picks itself"
        assert listening["port"] in process.ports, f"{process.name}: port {listening['port']} is not declared"
        host = next(resolve(v, secrets) for k, v in process.env.items() if k.endswith("_HOST") and k != "ATELIER_HOME")
        assert host == "0.0.0.0", f"{process.name} listens on {host} only"


def test_addresses_name_a_process_listening_there(processes: list[Process], secrets: dict[str, str]) -> None:
    listening = {process.name: set(listening_ports(process, secrets).values()) for process in processes}
    for process in processes:
        for name, value in process.env.items():
            if not (name.endswith("_ADDRESS") or name == "ATELIER_INFERENCE_HTTP") or name == "ATELIER_AGENT_ADDRESS":
                continue
            text = resolve(value, secrets)
            assert text is not None
            host, _, port = text.rpartition(":")
            target = host.split(".")[0]
            if host == "127.0.0.1":  # the Compose agent: host networking, the services' published ports
                assert any(int(port) in p.ports for p in processes if p.name != process.name), f"{name}={text}"
                continue
            assert int(port) in listening.get(target, set()), f"{process.name}: {name}={text} names no listener"


def test_each_service_has_a_token_of_its_own(processes: list[Process]) -> None:
    keys = {}
    for process in processes:
        token = process.env.get("ATELIER_TOKEN")
        assert token is not None or process.module == "gateway", f"{process.name} has no token"
        if token is not None:
            keys[process.name] = str(getattr(token, "key", token))
    assert len(set(keys.values())) == len(keys), keys


def test_the_slurm_scheduler_reads_what_it_is_given(secrets: dict[str, str]) -> None:
    (process,) = slurm_processes()
    assert process.module == "services.scheduler"
    assert importlib.util.find_spec("services.scheduler.__main__") is not None
    unknown = {name for name in process.env if name.startswith("ATELIER_")} - readable_names(process.module)
    assert not unknown, sorted(unknown)
    (settings,) = service_settings(process, secrets)
    assert isinstance(settings, SchedulerSettings)
    assert settings.default_executor == "slurm"
    assert settings.slurm_gpu_types == {"a100": "A100-80", "v100": "V100M32"}
    assert settings.auth == "on"
    assert settings.port in process.ports


def test_the_settings_table_covers_every_runnable_module() -> None:
    assert set(SETTINGS) == {s.module for s in SERVICES if s.kind in ("grpc", "gateway")} | {"services.scheduler.agent"}
