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
    registry_address: str = Field(
        "", description="host:port of the registry; empty means ATELIER_REGISTRY_ADDRESS or the local stack."
    )
    data_address: str = Field(
        "", description="host:port of the data service; empty means ATELIER_DATA_ADDRESS or the local stack."
    )
    drift_window_rows: int = Field(5000, ge=1, description="Rows of samples kept per deployment and model version.")
    drift_window_seconds: float = Field(3600.0, gt=0, description="Age beyond which samples leave the window.")
    drift_min_rows: int = Field(100, ge=1, description="Rows a window needs before its drift is judged.")
    drift_share: float = Field(
        0.5, gt=0, le=1, description="Share of drifted feature columns at which a dataset drifts (Evidently's 0.5)."
    )
    drift_reference_rows: int = Field(
        5000, ge=1, description="Rows of the training data kept as the reference (a random subset beyond)."
    )
    drift_max_file_bytes: int = Field(256 * 1024 * 1024, ge=1, description="Largest dataset file read for a reference.")
    drift_interval_seconds: float = Field(
        30.0, gt=0, description="How often every deployment's drift is computed for the metrics."
    )
    drift_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Nice value of the threads that store drift samples and compare windows (Linux), so that "
        "this background work takes the CPU that serving on the same machine leaves idle; 0 keeps the "
        "monitor's own priority.",
    )
    usage_publish_seconds: float = Field(
        30.0, gt=0, description="How often the GPU time and energy of jobs that changed are sent to the registry."
    )
