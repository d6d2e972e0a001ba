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


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", "sim", *args], capture_output=True, text=True, timeout=120
    )


def test_sim_refuses_loads_it_cannot_reach(tmp_path: Path) -> None:
    (tmp_path / "openb_node_list_gpu_node.csv").write_text(
        "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\n"
    )
    (tmp_path / "openb_pod_list_gpuspec33.csv").write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
        "p0,1000,1024,1,1000,,LS,Running,5,100,5\np1,1000,1024,1,1000,,LS,Running,5,50,5\n"
    )

    at_once = _sim(str(tmp_path), "--load", "0.5")
    endless = _sim(str(tmp_path), "--load", "nan")
    as_is = _sim(str(tmp_path), "--load", "0", "--json")

    assert at_once.returncode == 1
    assert at_once.stderr.startswith("error: the trace's jobs all arrive at once")
    assert endless.returncode == 1
    assert endless.stderr.startswith("error: --load nan: give a finite offered load")
    assert as_is.returncode == 0, as_is.stderr
    assert json.loads(as_is.stdout)[0]["completed"] == 2


def test_sim_refuses_a_cluster_node_without_cards(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("submit_time,duration,gpus\n0,100,1\n")
    (tmp_path / "cluster.json").write_text(json.dumps({"nodes": [{"name": "a", "model": "A100-80", "count": -1}]}))

    refused = _sim(str(trace), "--cluster", str(tmp_path / "cluster.json"))

    assert refused.returncode == 1
    assert "node 'a': -1 cards; a node holds 1 to 64" in refused.stderr
