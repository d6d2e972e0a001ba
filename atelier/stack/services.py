"""What the one-machine stack runs: one entry per service, in start order.

Adding a service to `atelier up` is one line in `SERVICES`.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BASE_PORT = 50700
"""Port of the first service when `atelier up` is not given `--base-port`; the others add their offset."""


@dataclass(frozen=True)
class StackService:
    """One service of the local stack: how to start it and where it listens by default."""

    name: str
    module: str
    """The Python module run as `python -m <module>` (for `kind` "grpc"), or the program's name."""
    default_port_offset: int
    description: str = ""
    kind: str = "grpc"
    """"grpc": an Atelier service (health-checked over gRPC); "gateway": the REST gateway and gRPC front
    door (healthy when the front door's health and the REST `/healthz` answer); "prometheus": the metrics
    server."""
    http_port_offset: int | None = None
    """Offset of the port of its HTTP API (`ATELIER_<NAME>_HTTP_PORT`), for a service that serves one."""

    def env_var(self, field: str) -> str:
        """The environment variable of one of its settings, e.g. `ATELIER_DATA_PORT` for `port`."""
        return env_var(self.name, field)

    def port(self, base_port: int) -> int:
        """The port to listen on for a base port; a base port of 0 means an ephemeral port."""
        return base_port + self.default_port_offset if base_port else 0

    def http_port(self, base_port: int) -> int | None:
        """The port of its HTTP API for a base port (0: ephemeral), or None when it serves none."""
        if self.http_port_offset is None:
            return None
        return base_port + self.http_port_offset if base_port else 0

    def offsets(self) -> list[int]:
        """The port offsets it takes."""
        return [self.default_port_offset, *([] if self.http_port_offset is None else [self.http_port_offset])]


SERVICES: tuple[StackService, ...] = (
    StackService(name="data", module="services.data", default_port_offset=0, description="Data versioning"),
    StackService(
        name="registry", module="services.registry", default_port_offset=1, description="Runs and model registry"
    ),
    StackService(
        name="scheduler", module="services.scheduler", default_port_offset=2, description="GPU jobs and node agents"
    ),
    StackService(
        name="inference", module="services.inference", default_port_offset=3, description="KServe v2 model serving"
    ),
    StackService(
        name="monitor", module="services.monitor", default_port_offset=4, description="GPU accounting and drift"
    ),
    # Last: it forwards to all the others.
    StackService(
        name="gateway",
        module="gateway",
        default_port_offset=10,
        http_port_offset=11,
        description="gRPC front door and REST API",
        kind="gateway",
    ),
)

PROMETHEUS = StackService(
    name="prometheus", module="prometheus", default_port_offset=90, description="Metrics", kind="prometheus"
)
"""Started by `atelier up --with-prometheus`, after the services, scraping them all."""
KNOWN: dict[str, StackService] = {s.name: s for s in (*SERVICES, PROMETHEUS)}


def env_var(service: str, field: str) -> str:
    """The environment variable of a service setting, e.g. `ATELIER_DATA_ADDRESS` for data's address."""
    return f"ATELIER_{service.upper().replace('-', '_')}_{field.upper()}"
