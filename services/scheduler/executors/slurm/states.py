"""Slurm's job states in Atelier's terms, and the lines `squeue` and `sacct` print about them.

Both are asked with `--noheader` and `|`-separated fields: `squeue --format=%i|%T|%r|%N`
(id, state, reason, nodes) for the jobs Slurm still holds, `sacct --parsable2
--format=JobID,State,ExitCode,NodeList` for the ones that ended.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from services.scheduler.executors.base import ExternalState, Phase

QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
RUNNING_STATES = frozenset(
    {"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT"}
)
"""Jobs that hold (or are about to hold) their nodes; COMPLETING ones are still stopping."""
ENDED_STATES: dict[str, tuple[Phase, str]] = {
    "COMPLETED": (Phase.SUCCEEDED, "completed"),
    "FAILED": (Phase.FAILED, "failed"),
    "TIMEOUT": (Phase.FAILED, "reached its time limit"),
    "OUT_OF_MEMORY": (Phase.FAILED, "ran out of memory"),
    "NODE_FAIL": (Phase.FAILED, "lost a node"),
    "BOOT_FAIL": (Phase.FAILED, "could not boot its nodes"),
    "DEADLINE": (Phase.FAILED, "missed its deadline"),
    "CANCELLED": (Phase.CANCELLED, "was cancelled in Slurm"),
    "REVOKED": (Phase.CANCELLED, "was revoked"),
    "PREEMPTED": (Phase.PREEMPTED, "was preempted"),
}


def parse_squeue(text: str) -> dict[str, ExternalState]:
    """Jobs Slurm still queues or runs, by id (jobs it lists as ended are left to sacct)."""
    found: dict[str, ExternalState] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4:
            continue
        job_id, state, reason, nodes = fields[0], fields[1], fields[2], fields[3]
        if state in QUEUED_STATES:
            found[job_id] = ExternalState(Phase.QUEUED, f"{state} ({reason})" if reason else state)
        elif state in RUNNING_STATES:
            found[job_id] = ExternalState(Phase.RUNNING, state, hosts=expand_hostlist(nodes))
    return found


def parse_sacct(text: str) -> dict[str, ExternalState]:
    """Ended jobs by id; a job requeued in Slurm has a record per run, the last one counts."""
    found: dict[str, ExternalState] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3 or "." in fields[0]:
            continue  # not an allocation's line (steps are `12.batch`, `12.0`)
        job_id, state, exit_code = fields[0], fields[1], fields[2]
        hosts = expand_hostlist(fields[3]) if len(fields) > 3 and fields[3] != "None assigned" else ()
        word = state.split(" ")[0]
        if word in ENDED_STATES:
            found[job_id] = replace(ended_state(state, exit_code), hosts=hosts)
        elif word in RUNNING_STATES:
            found[job_id] = ExternalState(Phase.RUNNING, word)
        elif word in QUEUED_STATES:
            found[job_id] = ExternalState(Phase.QUEUED, word)
    return found


def parse_named(text: str, label: str, earliest: float) -> list[str]:
    """Ids of the jobs named `label` submitted at or after `earliest` (epoch seconds), from lines of
    `id|name|submit time` (squeue's %i|%j|%V, sacct's JobID,JobName,Submit; times in UTC)."""
    found = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3 or "." in fields[0] or not fields[0].isdigit() or fields[1] != label:
            continue
        try:
            submitted = datetime.strptime(fields[2], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
        if submitted >= earliest:
            found.append(fields[0])
    return found


def ended_state(state: str, exit_code: str) -> ExternalState:
    """`FAILED` with `3:0` -> FAILED, exit code 3; `CANCELLED by 0` with `0:15` -> CANCELLED, signal 15."""
    word = state.split(" ")[0]
    phase, meaning = ENDED_STATES[word]
    code = parse_exit_code(exit_code)
    reason = f"{meaning} ({state})"
    if code is not None and code > 0:
        reason += f", exit code {code}"
    elif code is not None and code < 0:
        reason += f", killed by signal {-code}"
    return ExternalState(phase, reason, code)


def parse_exit_code(text: str) -> int | None:
    """Slurm's `code:signal` as Atelier counts it: the code, or minus the signal when one killed it."""
    code, _, signal = text.partition(":")
    if not code.isdigit():
        return None
    if signal.isdigit() and int(signal) > 0:
        return -int(signal)
    return int(code)


def expand_hostlist(text: str) -> tuple[str, ...]:
    """Slurm's compressed host list: `gpu[01-03,07],login1` -> gpu01, gpu02, gpu03, gpu07, login1."""
    hosts: list[str] = []
    for item in _top_level_split(text.strip()):
        hosts.extend(_expand_item(item))
    return tuple(hosts)


def _top_level_split(text: str) -> list[str]:
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
    items.append(text[start:])
    return [item for item in items if item]


def _expand_item(item: str) -> list[str]:
    opening = item.find("[")
    closing = item.find("]", opening)
    if opening < 0 or closing < 0:
        return [item]
    prefix, ranges, rest = item[:opening], item[opening + 1 : closing], item[closing + 1 :]
    numbers: list[str] = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        if not high:
            numbers.append(low)
            continue
        numbers.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
    return [f"{prefix}{number}{tail}" for number in numbers for tail in _expand_item(rest) or [""]]
