"""Where a service of the local stack listens.

`ATELIER_<NAME>_ADDRESS` wins; otherwise the address file the running service wrote to
`$ATELIER_HOME/run/<name>.json` (`{"address": "host:port", "pid": N, "metrics": "host:port"}`, plus
`"http": "host:port"` for a service that also serves HTTP, such as the inference service's REST v2).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atelier.errors import InvalidArgument, Unavailable
from atelier.runtime.home import atelier_home
from atelier.stack.services import env_var


@dataclass(frozen=True)
class PublishedAddress:
    """What a serving process wrote to its address file."""

    address: str
    pid: int | None
    metrics: str = ""
    """host:port of the service's Prometheus endpoint (`/metrics`); empty when it has none."""
    http: str = ""
    """host:port of the service's own HTTP API (the inference service's REST v2); empty when none."""


def host_port(host: str, port: int) -> str:
    """`host:port`, an IPv6 host in brackets (`[::1]:50051`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` right now (for a process that binds it a moment later and cannot report a port
    it picked itself: Prometheus, nginx)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextmanager
def reserved_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port free on `host`, held bound (not listening) with SO_REUSEPORT until the block ends: a server
    that binds it with SO_REUSEPORT too (Envoy's listeners do, on Linux) gets it, while no other process
    is given it meanwhile as `free_port`'s could be."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as held:
        if hasattr(socket, "SO_REUSEPORT"):
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((host, 0))
        yield int(held.getsockname()[1])


def run_dir(home: Path) -> Path:
    """The directory of the stack's run files (address files, `stack.json`)."""
    return home / "run"


def address_file(home: Path, name: str) -> Path:
    """The address file of one service."""
    return run_dir(home) / f"{name}.json"


def read_address_file(path: Path) -> PublishedAddress | None:
    """The address published in `path`, or None when the file is missing or not a valid address file."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(content, dict) or not isinstance(content.get("address"), str) or not content["address"]:
        return None
    pid = content.get("pid")
    metrics = content.get("metrics")
    http = content.get("http")
    return PublishedAddress(
        address=content["address"],
        pid=pid if isinstance(pid, int) else None,
        metrics=metrics if isinstance(metrics, str) else "",
        http=http if isinstance(http, str) else "",
    )


def write_address_file(path: Path, address: str, pid: int, metrics: str = "", http: str = "") -> None:
    """Atomically publish where a process listens (and serves metrics, and HTTP when it does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    content: dict[str, object] = {"address": address, "pid": pid, "metrics": metrics}
    if http:
        content["http"] = http
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


GATEWAY_VARIABLE = "ATELIER_ADDRESS"
"""One address for every service: the gateway's gRPC front door."""


def _checked(address: str, variable: str) -> str:
    """An address from the environment, if it can be one: printable ASCII without spaces."""
    if not all("!" <= character <= "~" for character in address):
        raise InvalidArgument(
            f"{variable} is {address!r}: an address is host:port in printable ASCII, e.g. 127.0.0.1:50051",
            metadata={"field": variable},
        )
    return address


def service_address(name: str, home: Path | None = None, via_gateway: bool = True) -> str:
    """The `host:port` of a service: `ATELIER_<NAME>_ADDRESS`, else the gateway's front door when
    `ATELIER_ADDRESS` names it (and `via_gateway`: the gateway itself looks past it), else the service's
    address file under the home.

    Raises `Unavailable` when none gives an address, or the process that wrote the file is gone.
    """
    variable = env_var(name, "address")
    from_env = os.environ.get(variable, "").strip()
    if from_env:
        return _checked(from_env, variable)
    gateway = os.environ.get(GATEWAY_VARIABLE, "").strip() if via_gateway else ""
    if gateway:
        return _checked(gateway, GATEWAY_VARIABLE)
    path = address_file(home or atelier_home(), name)
    published = read_address_file(path)
    hint = f"run `atelier up` or set {variable}"
    if published is None:
        raise Unavailable(f"no address for the {name} service: {hint}")
    if published.pid is not None and not pid_alive(published.pid):
        raise Unavailable(f"the {name} service (pid {published.pid}, {path}) is not running: {hint}")
    return published.address
