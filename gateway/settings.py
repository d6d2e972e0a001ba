"""Settings of the gateway: REST and the gRPC front door (`ATELIER_GATEWAY_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from atelier.runtime.settings import atelier_home

FrontDoorProxy = Literal["python", "nginx", "auto"]
"""What serves the front door's port: `python`, the Python front door alone; `nginx`, nginx in front of it
(`gateway.frontdoor.nginx`); `auto`, nginx when it is installed."""


class GatewaySettings(BaseSettings):
    """What the gateway can be told. Service addresses come from `ATELIER_<SVC>_ADDRESS` or the stack's
    address files under `home`."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_GATEWAY_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(0, ge=0, le=65535, description="Port of the gRPC front door; 0 picks a free one.")
    front_door_proxy: FrontDoorProxy = Field(
        "auto",
        description="What serves the front door's port: `nginx` in front of the Python front door (the stack "
        "services' calls forwarded by nginx's gRPC proxy, about 0.1 ms a call instead of 0.7), `python` alone, "
        "or `auto`: nginx when it is installed.",
    )
    nginx_binary: str = Field("nginx", description="The nginx executable (a name on PATH or in /usr/sbin, or a path).")
    iam_port: int = Field(
        0, ge=0, le=65535, description="Port of the IAM service on 127.0.0.1 (reached through the front door)."
    )
    http_port: int = Field(0, ge=0, le=65535, description="Port of the REST gateway; 0 picks a free one.")
    metrics_port: int = Field(
        0, ge=-1, le=65535, description="Port of the Prometheus /metrics endpoint; 0 picks a free one, -1 turns it off."
    )
    home: Path = Field(default_factory=atelier_home, description="State directory of the local stack.")
    address_file: Path | None = Field(
        None,
        description="When set, the front door's address (and the REST one as `http`) is written to this file once "
        "both serve.",
    )
    default_timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline of a call to a service when the request has no X-Request-Timeout."
    )
    max_timeout_seconds: float = Field(300.0, gt=0, description="The largest X-Request-Timeout accepted.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="The largest JSON body of one request (the services' message limit)."
    )
    health_timeout_seconds: float = Field(1.0, gt=0, description="Deadline of each service's check in /healthz.")
    shutdown_grace_seconds: float = Field(5.0, ge=0, description="How long calls in flight may finish at stop.")
    log_level: str = Field("INFO", description="Python logging level.")
