"""An agent the scheduler refuses, or whose inventory is wrong, ends with one line instead of retrying forever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.scheduler.conftest import ROOT, Cluster, inventory

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _agent(cluster: Cluster, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ATELIER_AGENT_SCHEDULER_ADDRESS": cluster.address,
        "ATELIER_AGENT_DATA_ADDRESS": cluster.data_address,
        "ATELIER_AGENT_ADDRESS": "127.0.0.1",
        "ATELIER_AGENT_DISCOVERY": "declared",
        "ATELIER_AGENT_INVENTORY_JSON": inventory("L4"),
        "ATELIER_AGENT_WORK_DIR": str(tmp_path / "agent"),
        "ATELIER_AGENT_HOME": str(cluster.home),
        "ATELIER_AGENT_METRICS_PORT": "0",
        "PYTHONPATH": str(ROOT),
        **{f"ATELIER_AGENT_{key.upper()}": value for key, value in settings.items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "services.scheduler.agent"], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_node_name_the_scheduler_refuses_ends_the_agent(cluster: Cluster, tmp_path: Path) -> None:
    ended = _agent(cluster, tmp_path, node_id="BAD NAME")

    assert ended.returncode == 1
    assert ended.stderr.strip().splitlines()[-1].startswith("atelier agent: ")
    assert "BAD NAME" in ended.stderr.strip().splitlines()[-1]


def test_an_inventory_that_cannot_be_read_ends_the_agent(cluster: Cluster, tmp_path: Path) -> None:
    missing = _agent(cluster, tmp_path, node_id="n1", inventory=str(tmp_path / "nowhere.json"))
    wrong = _agent(cluster, tmp_path, node_id="n1", inventory_json='{"cards": [{"model": "L4", "count": "x"}]}')

    assert missing.returncode == 1
    assert "cannot read the inventory" in missing.stderr
    assert "No such file or directory" in missing.stderr
    assert wrong.returncode == 1
    assert "card entry 0" in wrong.stderr
    assert "count: Input should be a valid integer" in wrong.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr
