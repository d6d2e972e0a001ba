"""Settings of the monitor service (`ATELIER_MONITOR_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atelier.runtime.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    """What the monitor can be told, on top of what every service can."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_MONITOR_", extra="ignore")

    report_memory_days: float = Field(
        7.0, gt=0, description="How long report ids are remembered to drop retried reports."
    )
