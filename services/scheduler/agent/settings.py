"""Settings of a node agent (`ATELIER_AGENT_*`)."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from atelier.runtime.settings import atelier_home


class AgentSettings(BaseSettings):
    """What a node agent can be told."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_AGENT_", extra="ignore")

    scheduler_address: str = Field(
        "", description="host:port of the scheduler; empty means ATELIER_SCHEDULER_ADDRESS or the local stack."
    )
    data_address: str = Field(
        "", description="host:port of the data service; empty means ATELIER_DATA_ADDRESS or the local stack."
    )
    node_id: str = Field(default_factory=lambda: socket.gethostname().split(".")[0].lower(), description="Node id.")
    address: str = Field("", description="Host other nodes reach this one at; empty means the node id.")
    discovery: str = Field(
        "auto", pattern="^(auto|nvml|declared)$", description="auto: NVML when a driver is there, else declared."
    )
    inventory: Path | None = Field(None, description="JSON file declaring the node's cards (declared discovery).")
    inventory_json: str = Field("", description="The declared inventory itself, as JSON.")
    work_dir: Path | None = Field(None, description="Where jobs run and datasets are cached; default under home.")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels of the node.")
    monitor_address: str = Field(
        "",
        description="host:port of the monitor (usage reports); empty means ATELIER_MONITOR_ADDRESS or the local stack.",
    )
    usage_report_interval_seconds: float = Field(15.0, gt=0, description="How often usage is reported to the monitor.")
    metrics_host: str = Field("0.0.0.0", description="Interface of the GPU metrics endpoint (dcgm-exporter names).")
    metrics_port: int = Field(
        0, ge=-1, le=65535, description="Port of the GPU metrics endpoint; 0 picks a free one, -1 turns it off."
    )
    telemetry_interval_seconds: float = Field(1.0, gt=0, description="How often every card is sampled.")
    idle_utilization_percent: float = Field(
        5.0, ge=0, le=100, description="A held card under this utilisation counts as idle."
    )
    idle_after_seconds: float = Field(
        600.0, ge=0, description="How long a held card must stay idle before it is flagged."
    )
    simulated_busy_utilization: float = Field(
        90.0, ge=0, le=100, description="Utilisation a declared (simulated) card shows while a task holds it."
    )
    home: Path = Field(default_factory=atelier_home, description="State directory of the local stack.")
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: str = Field("text", pattern="^(json|text)$", description="`json` or `text` log lines.")
