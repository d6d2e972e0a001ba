"""Prometheus for the one-machine stack (`atelier up --with-prometheus`): Debian's `prometheus`
binary, configured to scrape every service of the stack.

Targets are found through Prometheus's file service discovery: each service that serves metrics
gets `prometheus/targets/<name>.json` under the stack's home (a target group with `job` and
`service` labels), written once it is serving and re-read by Prometheus every few seconds. Anything
else on the machine with a `/metrics` endpoint (node agents, for example) joins by writing a file
there too. The time series live in `prometheus/data`, so they survive a restart of the stack.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from atelier.errors import FailedPrecondition

BINARY_ENV = "ATELIER_PROMETHEUS_BIN"
SCRAPE_INTERVAL = "5s"
RETENTION = "7d"


def binary() -> str:
    """The Prometheus executable: `$ATELIER_PROMETHEUS_BIN`, else `prometheus` on PATH."""
    found = os.environ.get(BINARY_ENV) or shutil.which("prometheus")
    if not found or not os.access(found, os.X_OK):
        raise FailedPrecondition(
            "prometheus is not installed: run `make prometheus` (Debian's package) "
            f"or point {BINARY_ENV} at a prometheus binary"
        )
    return found


def directory(home: Path) -> Path:
    return home / "prometheus"


def targets_dir(home: Path) -> Path:
    """Where target files (`<name>.json`) are picked up from."""
    return directory(home) / "targets"


def write_targets(home: Path, name: str, address: str, labels: dict[str, str] | None = None, job: str = "") -> Path:
    """Publish one scrape target (host:port serving `/metrics`) in `<name>.json`, as job `job` (or `name`)."""
    path = targets_dir(home) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    group = {"targets": [address], "labels": {"job": job or name, "service": job or name, **(labels or {})}}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([group], indent=2))
    os.replace(tmp, path)
    return path


def remove_targets(home: Path, name: str) -> None:
    (targets_dir(home) / f"{name}.json").unlink(missing_ok=True)


RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
"""The shipped alert rules (in a source checkout), evaluated by the local Prometheus too."""


def write_config(home: Path) -> Path:
    """`prometheus/prometheus.yml`: scrape whatever the target files name, evaluate the shipped alert
    rules (JSON is valid YAML)."""
    config: dict[str, object] = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "atelier",
                "file_sd_configs": [{"files": [str(targets_dir(home) / "*.json")], "refresh_interval": "5s"}],
            }
        ],
    }
    if RULES.is_dir():
        config["rule_files"] = [str(RULES / "*.yml")]
    path = directory(home) / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    targets_dir(home).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


def command(home: Path, port: int) -> list[str]:
    """The Prometheus command line for the stack in `home`, listening on 127.0.0.1:`port`."""
    return [
        binary(),
        f"--config.file={write_config(home)}",
        f"--storage.tsdb.path={directory(home) / 'data'}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]


def ready(address: str, timeout: float = 1.0) -> bool:
    """Whether the Prometheus at `address` answers its readiness endpoint."""
    try:
        with urllib.request.urlopen(f"http://{address}/-/ready", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
