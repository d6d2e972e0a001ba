"""`python -m services.scheduler.agent` (what `atelier agent` starts)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from atelier.client import DataClient
from atelier.client.channel import connect
from atelier.client.scheduler import AgentClient
from atelier.errors import AtelierError, InvalidArgument
from atelier.runtime.logging import configure_logging
from atelier.runtime.settings import load_settings
from atelier.runtime.tracing import configure_tracing, shutdown_tracing
from atelier.stack.addresses import service_address
from services.scheduler.agent.agent import Agent, AgentConfig
from services.scheduler.agent.datasets import DatasetCache
from services.scheduler.agent.discovery import DeclaredInventory, GpuDiscovery, NvmlDiscovery
from services.scheduler.agent.settings import AgentSettings
from services.scheduler.agent.telemetry.endpoint import start_telemetry
from services.scheduler.catalogue import card_spec

log = logging.getLogger("atelier.agent")


def discovery_for(settings: AgentSettings) -> GpuDiscovery:
    """NVML when asked or when a driver answers; the declared inventory otherwise."""
    declared = settings.inventory is not None or bool(settings.inventory_json)
    if settings.discovery == "nvml" or (settings.discovery == "auto" and not declared):
        try:
            return NvmlDiscovery()
        except Exception as error:  # noqa: BLE001 - pynvml raises NVMLError subclasses or OSError without a driver
            if settings.discovery == "nvml":
                raise InvalidArgument(f"NVML is not available on this node: {error}") from error
            raise InvalidArgument(
                f"no NVIDIA driver answered ({error}); declare the node's cards with --inventory FILE "
                '(JSON like {"cards": [{"model": "A100-80", "count": 4}]})'
            ) from error
    if settings.inventory is not None:
        return DeclaredInventory.from_file(settings.inventory, card_spec)
    return DeclaredInventory(settings.inventory_json, card_spec, "ATELIER_AGENT_INVENTORY_JSON")


def build(settings: AgentSettings) -> Agent:
    scheduler = settings.scheduler_address or service_address("scheduler", settings.home)
    data = settings.data_address or service_address("data", settings.home)
    config = AgentConfig(
        node_id=settings.node_id,
        address=settings.address or settings.node_id,
        work_dir=(settings.work_dir or settings.home / "agents" / settings.node_id).absolute(),
        labels=settings.labels,
    )
    datasets = DatasetCache(DataClient.at(data), lambda token: DataClient(connect(data, token=token), address=data))
    return Agent(config, discovery_for(settings), AgentClient.at(scheduler), datasets.fetch)


def main() -> None:
    settings = load_settings(AgentSettings, "agent")
    configure_logging(f"agent-{settings.node_id}", settings.log_level, settings.log_format)
    configure_tracing("atelier-agent")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the node's tasks and leaving", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    telemetry = None
    try:
        agent = build(settings)
        telemetry = start_telemetry(settings, agent.discovery, agent.holders, stop)
        agent.run(stop)
    except AtelierError as error:
        print(f"atelier agent: {error.message}", file=sys.stderr)
        sys.exit(1)
    finally:
        stop.set()
        if telemetry is not None:
            telemetry.stop()
        shutdown_tracing()
