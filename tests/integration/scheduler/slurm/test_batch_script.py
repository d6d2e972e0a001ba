"""The batch script of a 2-node job, run by bash as Slurm would run it on the first node.

One Slurm node cannot run a 2-node allocation, so `srun` and `scontrol` here are small stand-ins that
do what Slurm's do for the script (start the command once per node with SLURM_NODEID, expand the node
list); bash, the quoting and the variables are real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.executors.base import Submission
from services.scheduler.executors.slurm.script import ScriptSettings, batch_script
from services.scheduler.spec import Shape

SRUN = """#!/bin/bash
# srun of a 2-node allocation: the command once per node, each with its SLURM_NODEID.
while [[ "$1" == --* ]]; do shift; done
for node in 0 1; do SLURM_NODEID=$node "$@" || exit $?; done
"""
SCONTROL = """#!/bin/bash
[[ "$1 $2 $3" == "show hostnames gpu[01-02]" ]] && printf 'gpu01\\ngpu02\\n'
"""
RECORDER = f"""#!{sys.executable}
import json, os, sys
keep = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "ATELIER_NODE_RANK", "ATELIER_JOB", "LR")
print(json.dumps({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keep}}}}))
"""


def run_script(tmp_path: Path, job: pb.Job, shape: Shape) -> list[dict[str, object]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL), ("recorder", RECORDER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "job.sbatch"
    settings = ScriptSettings(str(bin_dir / "recorder"), 29400, 500)
    script.write_text(batch_script(Submission("projects/lab/jobs/big", 0, job, shape), settings, []))
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "1234",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "gpu[01-02]",
    }
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_every_node_runs_torchrun_with_the_rendezvous_on_the_first_host(tmp_path: Path) -> None:
    job = pb.Job(command=["python", "train.py", "--tag", "a b", "$HOME"], env={"LR": "0.1"})
    runs = run_script(tmp_path, job, Shape(2, 4))
    assert [run["argv"] for run in runs] == [
        [
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            "--nproc-per-node=4",
            "--rdzv-id=1234",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=gpu01:{29400 + 1234 % 500}",
            "--max-restarts=0",
            "train.py",
            "--tag",
            "a b",
            "$HOME",
        ]
    ] * 2
    assert [run["env"]["ATELIER_NODE_RANK"] for run in runs] == ["0", "1"]  # type: ignore[index]
    assert {run["env"]["LR"] for run in runs} == {"0.1"}  # type: ignore[index]
    assert {run["env"]["ATELIER_JOB"] for run in runs} == {"projects/lab/jobs/big"}  # type: ignore[index]


def test_a_command_job_gets_rank_world_size_and_master_per_node(tmp_path: Path) -> None:
    job = pb.Job(command=["python", "serve.py"], launcher=pb.LAUNCHER_COMMAND)
    runs = run_script(tmp_path, job, Shape(2, 1))
    assert [run["argv"] for run in runs] == [["serve.py"], ["serve.py"]]
    assert [run["env"] for run in runs] == [
        {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "gpu01",
            "MASTER_PORT": str(29400 + 1234 % 500),
            "ATELIER_NODE_RANK": str(rank),
            "ATELIER_JOB": "projects/lab/jobs/big",
            "LR": None,
        }
        for rank in (0, 1)
    ]
