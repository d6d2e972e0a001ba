"""What squeue and sacct print, in Atelier's terms; Slurm's command failures as one line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from atelier.errors import FailedPrecondition, Unavailable
from services.scheduler.executors.base import ExternalState, Phase
from services.scheduler.executors.slurm.commands import SlurmCommands, command_error
from services.scheduler.executors.slurm.states import (
    expand_hostlist,
    parse_exit_code,
    parse_named,
    parse_sacct,
    parse_squeue,
)


def test_squeue_lines_give_queued_and_running_jobs_and_leave_ended_ones_to_sacct() -> None:
    text = "12|PENDING|Resources|\n13|RUNNING|None|gpu[01-02]\n14|COMPLETING|None|gpu03\n15|COMPLETED|None|gpu04\n"
    assert parse_squeue(text) == {
        "12": ExternalState(Phase.QUEUED, "PENDING (Resources)"),
        "13": ExternalState(Phase.RUNNING, "RUNNING", hosts=("gpu01", "gpu02")),
        "14": ExternalState(Phase.RUNNING, "COMPLETING", hosts=("gpu03",)),
    }


@pytest.mark.parametrize(
    ("line", "phase", "reason", "code"),
    [
        ("7|COMPLETED|0:0|vm", Phase.SUCCEEDED, "completed (COMPLETED)", 0),
        ("7|FAILED|3:0|vm", Phase.FAILED, "failed (FAILED), exit code 3", 3),
        ("7|TIMEOUT|0:15|vm", Phase.FAILED, "reached its time limit (TIMEOUT), killed by signal 15", -15),
        ("7|OUT_OF_MEMORY|0:125|vm", Phase.FAILED, "ran out of memory (OUT_OF_MEMORY), killed by signal 125", -125),
        ("7|NODE_FAIL|1:0|vm", Phase.FAILED, "lost a node (NODE_FAIL), exit code 1", 1),
        ("7|CANCELLED by 0|0:0|vm", Phase.CANCELLED, "was cancelled in Slurm (CANCELLED by 0)", 0),
        ("7|PREEMPTED|0:0|vm", Phase.PREEMPTED, "was preempted (PREEMPTED)", 0),
    ],
)
def test_sacct_states_map_to_phases_with_reason_and_exit_code(line: str, phase: Phase, reason: str, code: int) -> None:
    assert parse_sacct(line) == {"7": ExternalState(phase, reason, code, ("vm",))}


def test_sacct_skips_steps_and_keeps_the_last_record_of_a_requeued_job() -> None:
    text = (
        "8|NODE_FAIL|0:0|a\n8.batch|CANCELLED|0:15|a\n8|COMPLETED|0:0|b[1-2]\n8.0|COMPLETED|0:0|b1\n"
        "9|PENDING|0:0|None assigned\n"
    )
    found = parse_sacct(text)
    assert found["8"] == ExternalState(Phase.SUCCEEDED, "completed (COMPLETED)", 0, ("b1", "b2"))
    assert found["9"].phase == Phase.QUEUED


def test_exit_codes_count_signals_as_negative() -> None:
    assert [parse_exit_code(t) for t in ("0:0", "2:0", "0:9", "", "x:y")] == [0, 2, -9, None, None]


def test_host_lists_expand_as_slurm_writes_them() -> None:
    assert expand_hostlist("gpu[01-03,07],login1") == ("gpu01", "gpu02", "gpu03", "gpu07", "login1")
    assert expand_hostlist("a[8-10]") == ("a8", "a9", "a10")
    assert expand_hostlist("vm") == ("vm",)
    assert expand_hostlist("") == ()


def test_a_refusal_is_a_failed_precondition_with_slurms_last_line() -> None:
    error = command_error("sbatch", 1, "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    assert isinstance(error, FailedPrecondition)
    assert error.message == (
        "sbatch failed: sbatch: error: Batch job submission failed: Invalid partition name specified"
    )


@pytest.mark.parametrize(
    "text",
    [
        "squeue: error: slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
        "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
        'sbatch: error: Munge encode failed: Failed to access "/run/munge/munge.socket.2": No such file',
    ],
)
def test_an_unreachable_controller_is_unavailable(text: str) -> None:
    error = command_error("squeue", 1, text)
    assert isinstance(error, Unavailable)
    assert error.message.startswith("Slurm is not reachable: ")
    assert error.metadata == {"executor": "slurm", "command": "squeue"}


def test_a_missing_program_is_unavailable_naming_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match=f"Slurm is not reachable: sbatch not found in {tmp_path}"):
        SlurmCommands(str(tmp_path)).run("sbatch", "--version")


def test_jobs_named_like_an_attempt_count_only_when_submitted_since_the_given_time() -> None:
    since = datetime(2026, 12, 6, 13, 0, 0, tzinfo=UTC).timestamp()
    text = (
        "7|atelier-lab-big-0|2026-12-06T12:59:59\n"  # an older job of another deployment
        "8|atelier-lab-big-0|2026-12-06T13:00:00\n"
        "8.batch|batch|2026-12-06T13:00:00\n"
        "9|atelier-lab-big-1|2026-12-06T13:00:05\n"  # another attempt
        "10|atelier-lab-big-0|Unknown\n"
    )
    assert parse_named(text, "atelier-lab-big-0", since) == ["8"]
    assert parse_named("", "atelier-lab-big-0", since) == []
