"""Jobs handed to Slurm: sbatch to submit, squeue and sacct to follow, scancel to stop, and the output
file (under the work directory, which the Slurm nodes share) read back into the job's log.

Without accounting (no slurmdbd), `sacct` says so; the executor then reads the job completion log
instead (`sacct --completion`, which needs `JobCompType=jobcomp/filetxt`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from atelier.errors import FailedPrecondition, InvalidArgument, Unavailable
from atelier.scheduler.v1 import agent_service_pb2 as agent
from atelier.scheduler.v1 import resources_pb2 as pb
from services.scheduler.executors.base import ExternalState, Output, Submission, Submitted
from services.scheduler.executors.slurm.commands import SlurmCommands
from services.scheduler.executors.slurm.gres import GresChoice, choose_gres, gpu_types
from services.scheduler.executors.slurm.script import (
    DataPull,
    ScriptSettings,
    batch_script,
    failure_file,
    job_label,
    sbatch_arguments,
    start_directory,
)
from services.scheduler.executors.slurm.states import parse_named, parse_sacct, parse_squeue
from services.scheduler.spec import Shape

log = logging.getLogger(__name__)
MAX_READ = 4 * 1024 * 1024
"""Most output bytes copied per job and round, so one chatty job cannot stall the others."""
_ALREADY_GONE = ("already completing or completed", "invalid job id")
"""What scancel says of a job that ended before the cancel reached it."""
CLOCK_SKEW_SECONDS = 60.0
"""How far Slurm's clock may lag the scheduler's when a job is looked up by its submit time."""


class SlurmExecutor:
    """The Slurm side of the scheduler (see `services.scheduler.executors.base.Executor`)."""

    def __init__(
        self,
        commands: SlurmCommands,
        gpu_type_models: Mapping[str, str],
        work_dir: Path,
        partition: str = "",
        script: ScriptSettings | None = None,
        job_token: Callable[[agent.Task], str] | None = None,
        data_address: Callable[[], str] | None = None,
    ) -> None:
        self.commands = commands
        # host:port of the data service, as the Slurm nodes reach it: asked only of jobs with datasets.
        self.data_address = data_address
        # With access control on: the project-scoped token the job's processes get as ATELIER_TOKEN.
        self.job_token = job_token
        self.types = gpu_types(gpu_type_models)
        self.work_dir = work_dir
        self.partition = partition
        self.script = script or ScriptSettings()
        self.completion_log = False
        """True once sacct said accounting is off: ended jobs come from the job completion log."""

    def check(self, job: pb.Job, shape: Shape) -> None:
        if job.datasets and self.data_address is None:
            raise FailedPrecondition(
                "this scheduler's Slurm executor has no data service to pull job.datasets from",
                metadata={"executor": "slurm"},
            )
        choose_gres(self.types, job.resources, shape)

    def submit(self, submission: Submission) -> Submitted:
        gres = choose_gres(self.types, submission.job.resources, submission.shape)
        folder = self.folder(submission.job_name)
        folder.mkdir(parents=True, exist_ok=True)
        chdir = start_directory(folder, submission.job)
        output = folder / "slurm-%j.log"  # Slurm puts the job id in: see output_path
        arguments = sbatch_arguments(submission, gres.gres, self.partition, output, chdir)
        script = folder / f"attempt-{submission.attempt}.sbatch"
        if script.exists():  # written before an sbatch whose answer was never recorded: Slurm may hold it
            try:
                held = self.find(job_label(submission), max(script.stat().st_mtime, submission.created))
            except FailedPrecondition as error:  # never sbatch twice: wait until Slurm can tell
                raise Unavailable(f"cannot tell whether Slurm holds this attempt already: {error.message}") from None
            if held:
                return Submitted(held, f"{_request(gres)}; found in Slurm, submitted before (not submitted again)")
        address = self.data_address() if submission.job.datasets and self.data_address is not None else ""
        script.write_text(batch_script(submission, self.script, arguments, DataPull(folder, address)))
        answer = self.commands.run("sbatch", *arguments, str(script), env=self._token_env(submission)).strip()
        external_id = answer.split(";")[0]  # `--parsable` prints `id` or `id;cluster`
        if not external_id.isdigit():
            raise FailedPrecondition(f"sbatch answered {answer!r} instead of a job id")
        return Submitted(external_id, _request(gres))

    def find(self, label: str, since: float) -> str:
        """The id of the newest Slurm job named `label` submitted since `since` (epoch seconds, less
        CLOCK_SKEW_SECONDS), queued, running or ended; '' when there is none. Times are read in UTC."""
        earliest = since - CLOCK_SKEW_SECONDS
        utc = {"TZ": "UTC"}
        text = self.commands.run("squeue", "--noheader", f"--name={label}", "--format=%i|%j|%V", env=utc)
        found = parse_named(text, label, earliest)
        if not found:
            # (sacct refuses a start after now)
            start = datetime.fromtimestamp(min(earliest, time.time()), UTC).strftime("%Y-%m-%dT%H:%M:%S")
            fields = ("--noheader", "--parsable2", f"--name={label}", f"--starttime={start}")
            found = parse_named(self._sacct(*fields, "--format=JobID,JobName,Submit", env=utc), label, earliest)
        return max(found, key=int) if found else ""

    def _token_env(self, submission: Submission) -> dict[str, str]:
        if self.job_token is None:
            return {}
        task = agent.Task(job=submission.job_name, attempt=submission.attempt, user=submission.job.user)
        if submission.job.HasField("max_run_time"):
            task.max_run_time.CopyFrom(submission.job.max_run_time)
        token = self.job_token(task)
        return {"ATELIER_TOKEN": token} if token else {}

    def poll(self, external_ids: Sequence[str]) -> dict[str, ExternalState]:
        if not external_ids:
            return {}
        ids = ",".join(external_ids)
        found = self._live(ids)
        gone = [i for i in external_ids if i not in found]
        if gone:
            ended = self._ended(",".join(gone))
            found.update({i: state for i, state in ended.items() if i in gone})
        return found

    def cancel(self, external_id: str) -> None:
        try:
            self.commands.run("scancel", external_id)
        except FailedPrecondition as error:
            if not any(words in error.message.lower() for words in _ALREADY_GONE):
                raise

    def read_output(self, job_name: str, external_id: str, position: int, final: bool) -> Output:
        path = self.output_path(job_name, external_id)
        try:
            with path.open("rb") as stream:
                if position > os.fstat(stream.fileno()).st_size:
                    position = 0  # Slurm requeued the job and started its output afresh
                stream.seek(position)
                chunk = stream.read(MAX_READ)
                more = bool(stream.read(1))
        except FileNotFoundError:
            return Output([], position)
        end = len(chunk) if final and not more else chunk.rfind(b"\n") + 1
        text = chunk[:end].decode("utf-8", errors="replace")
        return Output(text.splitlines(), position + end, more)

    def explain(self, job_name: str, external_id: str) -> str:
        """What the batch script wrote when it ended before the job's command (a dataset it could not
        fetch); '' when it did not."""
        try:
            return (self.folder(job_name) / failure_file(external_id)).read_text(errors="replace").strip()
        except FileNotFoundError:
            return ""

    def folder(self, job_name: str) -> Path:
        _, project, _, job = job_name.split("/")
        return self.work_dir / project / job

    def output_path(self, job_name: str, external_id: str) -> Path:
        return self.folder(job_name) / f"slurm-{external_id}.log"

    def _live(self, ids: str) -> dict[str, ExternalState]:
        try:
            text = self.commands.run("squeue", "--noheader", f"--jobs={ids}", "--format=%i|%T|%r|%N")
        except FailedPrecondition as error:
            if "invalid job id" in error.message.lower():
                return {}  # none of them is in Slurm's memory any more
            raise
        return parse_squeue(text)

    def _ended(self, ids: str) -> dict[str, ExternalState]:
        return parse_sacct(
            self._sacct("--noheader", "--parsable2", f"--jobs={ids}", "--format=JobID,State,ExitCode,NodeList")
        )

    def _sacct(self, *fields: str, env: Mapping[str, str] | None = None) -> str:
        """sacct's answer from accounting, or from the job completion log once accounting said it is off
        (that log ignores --name: callers filter)."""
        if not self.completion_log:
            try:
                return self.commands.run("sacct", "--allocations", *fields, env=env)
            except FailedPrecondition as error:
                if "accounting storage is disabled" not in error.message.lower():
                    raise
                log.info("Slurm accounting is disabled; reading ended jobs from the job completion log")
                self.completion_log = True
        return self.commands.run("sacct", "--completion", *fields, env=env)


def _request(gres: GresChoice) -> str:
    """What the job asked Slurm for, in the words of the log's first line."""
    request = f"--gres={gres.gres}" if gres.gres else "no GPUs"
    if len(gres.satisfying) > 1 and ":" in gres.gres.removeprefix("gpu:"):
        request += f" (the least capable of {', '.join(gres.satisfying)})"
    return request


def slurm_executor(
    bin_dir: str,
    conf: str,
    timeout: float,
    gpu_type_models: Mapping[str, str],
    work_dir: str,
    home: Path,
    partition: str,
    script: ScriptSettings,
    job_token: Callable[[agent.Task], str] | None = None,
    data_address: Callable[[], str] | None = None,
) -> SlurmExecutor:
    """The executor from the scheduler's settings; INVALID_ARGUMENT naming a bad GPU type mapping."""
    try:
        commands = SlurmCommands(bin_dir, conf, timeout)
        folder = Path(work_dir) if work_dir else home / "slurm"
        folder = Path(os.path.abspath(folder))
        return SlurmExecutor(commands, gpu_type_models, folder, partition, script, job_token, data_address)
    except InvalidArgument as error:
        raise InvalidArgument(f"ATELIER_SCHEDULER_SLURM_GPU_TYPES: {error.message}") from None
