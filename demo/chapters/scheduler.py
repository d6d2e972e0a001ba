"""Chapter 4, scheduler: two node agents with different cards, a request no node could ever run
refused with the reason, and the digits model trained as a 2-node torch.distributed job, placed by
memory and precision, its logs followed live."""

from __future__ import annotations

import json
from typing import Any

from demo.agents import running_agents
from demo.chapter import Chapter, Context
from demo.runner import DemoError

NODES: dict[str, dict[str, Any]] = {
    "ampere": {"cards": [{"model": "A100-80", "count": 4}], "nvlink": [[0, 1], [2, 3]]},
    "ada": {"cards": [{"model": "L40S", "count": 2}, {"model": "L4", "count": 2}]},
}
"""Two declared nodes (no GPU needed): 4 x A100 80 GiB with NVLink pairs; 2 x L40S and 2 x L4."""
JOB = "digits-ddp"
RECIPE = ("--lr=0.05", "--hidden=64", "--epochs=25")


def run(context: Context) -> None:
    runner = context.runner
    dataset = context.refs.get("dataset", "digits@latest")
    runner.step("Start two node agents, each with a declared inventory of different cards")
    with running_agents(runner, NODES):
        runner.atelier("cluster")
        runner.step("Ask for what no node has: 4 cards with 80 GiB and fp8 on one node")
        refused = runner.atelier_fails(
            "jobs", "submit", "--gpus-per-node", "4", "--min-gpu-memory", "80GiB", "--precision", "fp8",
            "--", "python", "-m", "demo.train_digits",
        )  # fmt: skip
        runner.ok(f"refused at submission, not queued forever: {refused}")
        runner.step(f"Train the digits model as a 2-node torch.distributed job on {dataset}, following its logs")
        output = runner.atelier(
            "jobs", "submit", "--name", JOB, "--nodes", "2", "--gpus-per-node", "1",
            "--min-gpu-memory", "16GiB", "--precision", "bf16", "--dataset", dataset, "--follow",
            "--", "python", "-m", "demo.train_digits", f"--dataset={dataset}", *RECIPE,
        )  # fmt: skip
        runner.step("Where it ran, and why there")
        runner.atelier("jobs", "show", JOB)
        job = runner.quiet_json("jobs", "show", JOB)
    check(job, output)
    runner.step("What the job cost: GPU-hours and energy the agents measured, from the monitor")
    runner.atelier("usage", "--project", "default")
    used = runner.quiet_json("usage", "--project", "default")
    row = next((r for r in used.get("rows", []) if r.get("job") == job["name"]), None)
    if row is None or not row.get("gpuHours"):
        raise DemoError(f"the monitor has no usage for {job['name']}")
    runner.ok(f"{row['gpuHours'] * 60:.1f} GPU-minutes, {row['energyKwh'] * 1000:.2f} Wh (simulated cards)")
    result = json.loads(next(line for line in output.splitlines() if '"model_version"' in line).split("] ", 1)[1])
    runner.ok(f"both nodes trained together; rank 0 registered {result['model_version']}")
    runner.step("The run the job logged knows the job that ran it")
    tracked = runner.atelier_json("runs", "show", result["run"])
    if tracked.get("job") != job["name"]:
        raise DemoError(f"the run records job {tracked.get('job')!r}, not {job['name']}")
    runner.ok(f"run {result['run']} was job {job['name']}; val_accuracy {float(result['val_accuracy']):.3f}")
    if not tracked.get("gpuUsage", {}).get("gpuHours"):
        raise DemoError(f"`atelier runs show` gives no GPU use for {result['run']}")
    runner.ok(f"and shows what it cost: {tracked['gpuUsage']['gpuHours'] * 60:.1f} GPU-minutes")
    context.refs["job"] = job["name"]


def check(job: dict[str, object], output: str) -> None:
    """The job succeeded on both nodes, each on the least capable card that fits."""
    if job.get("state") != "JOB_STATE_SUCCEEDED":
        raise DemoError(f"the training job ended {job.get('state')}: {job.get('reason')}")
    placement = job.get("placement")
    nodes = sorted(n["node"] for n in placement["nodes"]) if isinstance(placement, dict) else []
    if nodes != ["nodes/ada", "nodes/ampere"]:
        raise DemoError(f"the 2-node job was placed on {nodes}, not on both agents")
    if "rank 1 of 2" not in output or "rank 0 of 2" not in output:
        raise DemoError("the job's log does not show both ranks joining the process group")


CHAPTER = Chapter(
    title="Scheduler",
    summary="Two agents, placement by memory and precision, a 2-node torch.distributed training job.",
    run=run,
)
