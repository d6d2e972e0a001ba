"""Settings of the data service (`ATELIER_DATA_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atelier.runtime.settings import ServiceSettings


class DataSettings(ServiceSettings):
    """What the data service can be told, on top of what every service can."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_DATA_", extra="ignore")

    object_store: str = Field(
        "",
        description="Object store URL: a directory, file:///dir, or s3://KEY:SECRET@host:port/bucket[/prefix]; "
        "empty means $ATELIER_HOME/objects.",
    )
    pack_target_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Chunks are packed into objects of about this size."
    )
    gc_grace_seconds: float = Field(3600.0, ge=0, description="Default grace period of garbage collection.")
    manifest_cache_entries: int = Field(64, ge=1, description="Decoded manifests kept in memory.")
