"""Settings of the inference service (`ATELIER_INFERENCE_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atelier.runtime.settings import ServiceSettings


class InferenceSettings(ServiceSettings):
    """What the inference service can be told, on top of what every service can."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_INFERENCE_", extra="ignore")

    max_message_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest request or response message accepted (tensors travel in it)."
    )
    registry_address: str = Field(
        "", description="host:port of the registry; empty means ATELIER_REGISTRY_ADDRESS or the local stack."
    )
    data_address: str = Field(
        "", description="host:port of the data service; empty means ATELIER_DATA_ADDRESS or the local stack."
    )
    max_tensor_bytes: int = Field(
        32 * 1024 * 1024, ge=1, description="Largest input tensor of one request; larger is RESOURCE_EXHAUSTED."
    )
    artifact_cache: Path | None = Field(
        None, description="Where fetched model files are kept, by digest; empty means $ATELIER_HOME/inference."
    )
    alias_poll_seconds: float = Field(
        2.0, gt=0, description="How often deployments of an alias (or latest) check where it points now."
    )
    torch_threads: int = Field(
        1,
        ge=0,
        description="torch intra-op threads (process-wide; 0 keeps torch's default of one per core). Instances "
        "already run batches in parallel, and idle intra-op threads spin, so 1 serves small models best on CPU.",
    )
    server_name: str = Field("atelier", description="Name ServerMetadata reports.")
    http_port: int = Field(
        0,
        ge=-1,
        le=65535,
        description="Port of the REST v2 API (KServe v2 / Triton HTTP); 0 picks a free one, -1 turns it off. "
        "The bound address is published as `http` in the address file.",
    )
    grpc_server: Literal["grpc.aio", "envoy"] = Field(
        "envoy",
        description="What serves the gRPC port: `envoy` (Envoy's HTTP/2 in front, every method served from the "
        "Python interpreter Envoy embeds, through pyvoy; the whole service runs there), or `grpc.aio` in the "
        "service's own process. REST v2 stays on uvicorn, on the HTTP port, either way.",
    )
    monitor_address: str = Field(
        "", description="host:port of the monitor; empty means ATELIER_MONITOR_ADDRESS or the local stack."
    )
    drift_sample_rate: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of successful requests whose inputs and predictions go to the monitor "
        "for drift (0 turns sampling off).",
    )
    drift_queue_size: int = Field(
        1000, ge=1, description="Sampled requests waiting to be sent; beyond, samples are dropped and counted."
    )
    drift_flush_seconds: float = Field(1.0, gt=0, description="Longest a drift sample waits before it is sent.")
    drift_max_features: int = Field(
        1024, ge=1, description="Requests with more input values per row are not sampled for drift."
    )

    def cache_dir(self) -> Path:
        return self.artifact_cache or self.home / "inference" / "artifacts"
