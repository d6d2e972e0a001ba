"""`atelier sim` replays a CSV trace with the scheduler's policy and both baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_sim_replays_a_csv_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("submit_time,duration,gpus,project\n0,100,4,a\n10,50,4,b\n20,30,8,a\n")
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"nodes": [{"name": "a", "model": "A100-80", "count": 4}]}))
    result = subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", "sim", str(trace), "--cluster", str(cluster), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    replays = json.loads(result.stdout)
    assert [r["name"] for r in replays] == ["atelier", "fifo + first fit", "priority + backfill, first fit"]
    for replay in replays:
        assert replay["jobs"] == 3
        assert replay["completed"] == 2  # the 8-GPU job can never run on a 4-GPU cluster
        assert replay["never_ran"] == 1
        assert replay["makespan_s"] == 150  # the second job waits for the first, 100 s + 50 s


def test_sim_names_a_bad_cluster(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("submit_time,duration,gpus,project\n0,100,4,a\n")
    (tmp_path / "bad.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", "sim", str(trace), "--cluster", str(tmp_path / "bad.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read cluster")
