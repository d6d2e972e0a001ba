"""`atelier usage` over a real monitor: tables and --json by job, project and user; bad options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from atelier.client.monitor import MonitorClient
from tests.integration.monitor.test_accounting import sample

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def atelier(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ATELIER_MONITOR_ADDRESS": address, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", "usage", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_usage_by_job_project_and_user(monitor: MonitorClient, tmp_path: Path) -> None:
    address = monitor.address
    old = NOW - timedelta(days=10)
    monitor.report_usage("nodes/n1", "a", [sample("projects/vision/jobs/train", "GPU-a", NOW, 3600, 7_200_000)])
    monitor.report_usage("nodes/n1", "b", [sample("projects/speech/jobs/asr", "GPU-b", old, 1800, 360_000, user="cy")])

    table = atelier(address)
    assert table.returncode == 0, table.stderr
    assert "projects/vision/jobs/train" in table.stdout
    assert "1.00" in table.stdout
    assert "2.000" in table.stdout
    assert "total" in table.stdout
    recent = json.loads(atelier(address, "--since", "7d", "--json").stdout)
    assert [r["job"] for r in recent["rows"]] == ["projects/vision/jobs/train"]
    by_project = json.loads(atelier(address, "--by", "project", "--json").stdout)
    assert {r["project"]: r["gpuHours"] for r in by_project["rows"]} == {"vision": 1.0, "speech": 0.5}
    by_user = json.loads(atelier(address, "--by", "user", "--project", "speech", "--json").stdout)
    assert [(r["user"], r["energyKwh"]) for r in by_user["rows"]] == [("cy", 0.1)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--by", "node"), "error: --by 'node' is not one of job, project, user"),
        (("--since", "last week"), "error: --since 'last week' is not a date (2026-12-01)"),
        (("--project", "Bad Name"), "error: invalid parent"),
        (("--since", "2027-01-01", "--until", "2026-01-01"), "error: --until 2026-01-01 is not after --since"),
        (("--since", "3000000d"), "error: --since 3000000d: too long; at most 100 years"),
    ],
)
def test_bad_options_are_one_line(monitor: MonitorClient, args: tuple[str, ...], message: str) -> None:
    result = atelier(monitor.address, *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(message)
