"""Settings of the registry service (`ATELIER_REGISTRY_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atelier.runtime.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    """What the registry can be told, on top of what every service can."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_REGISTRY_", extra="ignore")

    data_address: str = Field(
        "", description="host:port of the data service; empty means ATELIER_DATA_ADDRESS or the local stack."
    )
    heartbeat_timeout_seconds: float = Field(
        900.0, gt=0, description="A RUNNING run silent for this long is marked FAILED."
    )
    sweep_interval_seconds: float = Field(60.0, gt=0, description="How often silent runs are looked for.")
