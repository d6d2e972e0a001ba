"""Experiments and runs: creation, logging of metrics, params and tags, search, heartbeats."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from atelier.errors import FailedPrecondition, InvalidArgument, NotFound
from atelier.names import parse_name
from atelier.registry.v1 import registry_service_pb2 as rpc
from atelier.registry.v1 import resources_pb2 as pb
from atelier.runtime.database import transaction
from atelier.runtime.fields import check_relative_path
from atelier.runtime.pagination import decode_token, encode_token, page_size
from atelier.runtime.timestamps import to_datetime, utc
from services.registry.datalink import DataLink, check_artifact_name
from services.registry.experiments import EXPERIMENT, Experiments, now
from services.registry.points import check_entries, decode_points, loaded
from services.registry.search import RUNS, apply_ordering, compile_filter, parse_order_by
from services.registry.tables import (
    ExperimentRow,
    MetricPointRow,
    RunArtifactRow,
    RunInputRow,
    RunMetricRow,
    RunParamRow,
    RunRow,
    RunTagRow,
)
from services.registry.upsert import insert_ignore, upsert_latest
from services.registry.usage import JOB

RUN = "projects/{project}/experiments/{experiment}/runs/{run}"
MAX_POINTS = 100_000
_FINAL = {pb.RUN_STATE_FINISHED, pb.RUN_STATE_FAILED, pb.RUN_STATE_KILLED}
# Columns of a run that logging never reads (the environment lists every installed package).
_HEAVY = ("code", "environment", "command", "inputs")
# Statements built once (building one costs more than running it): a run by name, and its
# metrics' last values and artifacts.
_RUN = (
    select(RunRow)
    .join(ExperimentRow, col(ExperimentRow.id) == RunRow.experiment_id)
    .where(
        RunRow.run_id == sa.bindparam("run"),
        ExperimentRow.project == sa.bindparam("project"),
        ExperimentRow.name == sa.bindparam("experiment"),
    )
)
_LEAN_RUN = _RUN.options(*(defer(getattr(RunRow, name)) for name in _HEAVY))
_IDS: sa.BindParameter[list[int]] = sa.bindparam("ids", expanding=True)
_METRICS_OF = select(RunMetricRow.run_id, RunMetricRow.key, RunMetricRow.value).where(
    col(RunMetricRow.run_id).in_(_IDS)
)
_ARTIFACTS_OF = select(RunArtifactRow).where(col(RunArtifactRow.run_id).in_(_IDS))


def numeric(value: str) -> float | None:
    """A parameter's value as a number, when it reads as one (so `params.lr < 0.01` works)."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _check_new_run(run: pb.Run) -> None:
    """A new run's own fields: keys of params and tags, the job and diff artifact as the names they are."""
    check_entries("param", run.params, "run.params")
    check_entries("tag", run.tags, "run.tags")
    if run.job:
        parse_name(run.job, JOB, "run.job")
    if run.code.diff_artifact:
        check_artifact_name(run.code.diff_artifact, "run.code.diff_artifact")
    if run.HasField("start_time"):
        to_datetime(run.start_time, "run.start_time")


@dataclass
class RunView:
    """A run with its experiment, last metric values and artifacts."""

    project: str
    experiment: str
    row: RunRow
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[RunArtifactRow] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"projects/{self.project}/experiments/{self.experiment}/runs/{self.row.run_id}"


class Tracking:
    """The experiment-tracking side of the registry."""

    def __init__(self, engine: Engine, data: DataLink) -> None:
        self.engine = engine
        self.data = data
        self.experiments = Experiments(engine)

    # Runs -------------------------------------------------------------------------------------

    def create_run(self, parent: str, run: pb.Run) -> RunView:
        parts = parse_name(parent, EXPERIMENT, "parent")
        project = parts["project"]
        _check_new_run(run)  # before anything is written (the experiment is created on the way)
        inputs = sorted({self.data.dataset_version(ref, project) for ref in run.inputs})
        if run.parent_run:
            self.get_run(run.parent_run)
        stamp = now()
        experiment_id = self.experiments.ensure(project, parts["experiment"])
        with transaction(self.engine) as session:
            row = RunRow(
                run_id=uuid.uuid4().hex[:16],
                experiment_id=experiment_id,
                display_name=run.display_name,
                state=pb.RUN_STATE_RUNNING,
                start_time=to_datetime(run.start_time, "run.start_time") if run.HasField("start_time") else stamp,
                heartbeat_time=stamp,
                user=run.user,
                job=run.job,
                parent_run=run.parent_run,
                code=json_format.MessageToDict(run.code, preserving_proto_field_name=True),
                environment=json_format.MessageToDict(run.environment, preserving_proto_field_name=True),
                inputs=inputs,
                command=list(run.command),
                params=dict(run.params),
                tags=dict(run.tags),
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            params = [{"run_id": row.id, "key": k, "value": v, "value_num": numeric(v)} for k, v in run.params.items()]
            insert_ignore(session, RunParamRow, params)  # a new run: no params to compare with yet
            self._set_tags(session, row, dict(run.tags))
            insert_ignore(session, RunInputRow, [{"run_id": row.id, "dataset": d} for d in inputs])
        return RunView(project, parts["experiment"], row)

    def get_run(self, name: str) -> RunView:
        parts = parse_name(name, RUN)
        with transaction(self.engine) as session:
            row = self._run(session, parts)
            return self._view(session, parts["project"], parts["experiment"], [row])[0]

    def _run(self, session: Session, parts: dict[str, str], lean: bool = False) -> RunRow:
        row = session.exec(_LEAN_RUN if lean else _RUN, params=parts).first()
        if row is None:
            name = RUN.format(**parts)
            raise NotFound(f"run {name} not found", metadata={"resource": name})
        return row

    def _view(self, session: Session, project: str, experiment: str | None, rows: Sequence[RunRow]) -> list[RunView]:
        ids = [r.id for r in rows if r.id is not None]
        metrics: dict[int, dict[str, float]] = {}
        for run_id, key, value in session.exec(_METRICS_OF, params={"ids": ids}).all():
            metrics.setdefault(run_id, {})[key] = loaded(value)
        artifacts: dict[int, list[RunArtifactRow]] = {}
        for artifact in session.exec(_ARTIFACTS_OF, params={"ids": ids}).all():
            artifacts.setdefault(artifact.run_id, []).append(artifact)
        names: dict[int, str] = {}
        if experiment is None:
            experiment_ids = {r.experiment_id for r in rows}
            for row in session.exec(select(ExperimentRow).where(col(ExperimentRow.id).in_(experiment_ids))).all():
                assert row.id is not None
                names[row.id] = row.name
        return [
            RunView(
                project,
                experiment or names[r.experiment_id],
                r,
                metrics.get(r.id or 0, {}),
                artifacts.get(r.id or 0, []),
            )
            for r in rows
        ]

    def list_runs(self, parent: str, text: str, order_by: str, size: int, token: str) -> tuple[list[RunView], str]:
        parts = parse_name(parent, EXPERIMENT, "parent", wildcard=True)
        project = parts["project"]
        limit = page_size(size)
        offset = decode_token(token, 0)
        condition = compile_filter(text, RUNS, lambda ref: self.data.dataset_version(ref, project))
        ordering = parse_order_by(order_by, RUNS, "start_time desc")
        query = select(RunRow).join(ExperimentRow, col(ExperimentRow.id) == RunRow.experiment_id)
        query = query.where(ExperimentRow.project == project)
        if parts["experiment"] != "-":
            query = query.where(ExperimentRow.name == parts["experiment"])
        if condition is not None:
            query = query.where(condition)
        query = apply_ordering(query, ordering, RUNS).offset(offset).limit(limit + 1)
        with transaction(self.engine) as session:
            if parts["experiment"] != "-":
                self.experiments.find(session, project, parts["experiment"])
            rows = session.exec(query).all()
            views = self._view(session, project, None, rows[:limit])
        return views, encode_token(offset + limit) if len(rows) > limit else ""

    def update_run(self, run: pb.Run, paths: set[str]) -> RunView:
        allowed = {"state", "state_message", "end_time", "display_name", "tags"}
        if not paths or paths - allowed:
            raise InvalidArgument(
                f"update_mask must name some of {', '.join(sorted(allowed))}; got {sorted(paths)}",
                metadata={"field": "update_mask"},
            )
        parts = parse_name(run.name, RUN, "run.name")
        if "tags" in paths:
            check_entries("tag", run.tags, "run.tags")
        end = to_datetime(run.end_time, "run.end_time") if "end_time" in paths and run.HasField("end_time") else None
        with transaction(self.engine) as session:
            row = self._run(session, parts)
            if end is not None and end < utc(row.start_time):
                raise InvalidArgument(
                    f"run.end_time {end.isoformat()} is before the run's start_time {utc(row.start_time).isoformat()}; "
                    "allowed: the start time or later",
                    metadata={"field": "run.end_time"},
                )
            if "state" in paths:
                if run.state == pb.RUN_STATE_UNSPECIFIED or run.state not in pb.RunState.values():
                    raise InvalidArgument("run.state must be RUNNING, FINISHED, FAILED or KILLED")
                row.state = run.state
                if run.state in _FINAL and row.end_time is None and "end_time" not in paths:
                    row.end_time = max(now(), utc(row.start_time))  # a start given in the future ends there
            if "state_message" in paths:
                row.state_message = run.state_message
            if "end_time" in paths:
                row.end_time = end
            if "display_name" in paths:
                row.display_name = run.display_name
            if "tags" in paths:
                self._set_tags(session, row, dict(run.tags))
            row.heartbeat_time = now()
            session.add(row)
        return self.get_run(run.name)

    def delete_run(self, name: str) -> None:
        parts = parse_name(name, RUN)
        with transaction(self.engine) as session:
            row = self._run(session, parts)
            for table in (MetricPointRow, RunMetricRow, RunParamRow, RunTagRow, RunInputRow, RunArtifactRow):
                session.execute(sa.delete(table).where(table.run_id == row.id))  # type: ignore[attr-defined,arg-type]
            session.delete(row)

    # Logging ----------------------------------------------------------------------------------

    def log(
        self,
        name: str,
        points: Sequence[pb.MetricPoint],
        params: dict[str, str],
        tags: dict[str, str],
        columns: rpc.MetricColumns | None = None,
    ) -> int:
        """Store a batch of metric points, params and tags in one transaction; also a heartbeat."""
        count = len(points) + (len(columns.values) if columns is not None else 0)
        if count > MAX_POINTS:
            raise InvalidArgument(f"{count} metric points in one call; at most {MAX_POINTS}")
        parts = parse_name(name, RUN, "run")
        check_entries("param", params, "params")
        check_entries("tag", tags, "tags")
        rows, latest = decode_points(points, columns)
        with transaction(self.engine) as session:
            # The run's code, environment and command are not needed here: not decoding them keeps
            # a call that only logs metrics cheap.
            run = self._run(session, parts, lean=True)
            if run.state in _FINAL and (rows or params):
                state = pb.RunState.Name(run.state).removeprefix("RUN_STATE_")  # type: ignore[arg-type]
                raise FailedPrecondition(f"run {name} is {state}; it takes no more metrics or params")
            assert run.id is not None
            for row in rows:
                row["run_id"] = run.id
            if rows:
                session.execute(sa.insert(MetricPointRow), rows)
            upsert_latest(
                session,
                RunMetricRow,
                [{**v, "run_id": run.id, "experiment_id": run.experiment_id} for v in latest.values()],
                ["run_id", "key"],
            )
            self._add_params(session, run, params)
            if tags:
                self._set_tags(session, run, tags)
            run.heartbeat_time = now()
            session.add(run)
        return len(rows)

    def _add_params(self, session: Session, run: RunRow, params: dict[str, str]) -> None:
        if not params:
            return
        existing = dict(
            session.exec(
                select(RunParamRow.key, RunParamRow.value).where(
                    RunParamRow.run_id == run.id, col(RunParamRow.key).in_(list(params))
                )
            ).all()
        )
        for key, value in params.items():
            if key in existing and existing[key] != value:
                raise FailedPrecondition(
                    f"param {key!r} of the run is already {existing[key]!r}; params cannot change (got {value!r})",
                    metadata={"field": "params", "key": key},
                )
        fresh = {k: v for k, v in params.items() if k not in existing}
        insert_ignore(
            session,
            RunParamRow,
            [{"run_id": run.id, "key": k, "value": v, "value_num": numeric(v)} for k, v in fresh.items()],
        )
        run.params = {**run.params, **fresh}

    def _set_tags(self, session: Session, run: RunRow, tags: dict[str, str]) -> None:
        if not tags:
            return
        session.execute(sa.delete(RunTagRow).where(col(RunTagRow.run_id) == run.id, col(RunTagRow.key).in_(list(tags))))
        session.execute(sa.insert(RunTagRow), [{"run_id": run.id, "key": k, "value": v} for k, v in tags.items()])
        run.tags = {**run.tags, **tags}

    def metric_history(self, name: str, key: str, size: int, token: str) -> tuple[list[MetricPointRow], str]:
        parts = parse_name(name, RUN, "run")
        limit = page_size(size, default=10_000, maximum=100_000)
        after = decode_token(token, [-(2**62), 0])
        with transaction(self.engine) as session:
            run = self._run(session, parts)
            rows = session.exec(
                select(MetricPointRow)
                .where(
                    MetricPointRow.run_id == run.id,
                    MetricPointRow.key == key,
                    sa.tuple_(col(MetricPointRow.step), col(MetricPointRow.id)) > sa.tuple_(after[0], after[1]),
                )
                .order_by(col(MetricPointRow.step), col(MetricPointRow.id))
                .limit(limit + 1)
            ).all()
        if len(rows) > limit:
            last = rows[limit - 1]
            return list(rows[:limit]), encode_token([last.step, last.id])
        return list(rows), ""

    def add_artifact(self, name: str, artifact: pb.RunArtifact) -> RunView:
        parts = parse_name(name, RUN, "run")
        check_relative_path("artifact.path", artifact.path)  # relative to the run's artifact root
        check_artifact_name(artifact.artifact, "artifact.artifact")
        if artifact.size_bytes < 0:
            raise InvalidArgument(
                f"artifact.size_bytes is {artifact.size_bytes}; allowed: 0 or more",
                metadata={"field": "artifact.size_bytes"},
            )
        canonical, size = self.data.artifact_with_size(artifact.artifact)
        if artifact.size_bytes and artifact.size_bytes != size:
            raise InvalidArgument(
                f"artifact.size_bytes is {artifact.size_bytes}, but {canonical} holds {size} bytes; give {size} or "
                "leave it 0 (the artifact's size is taken)",
                metadata={"field": "artifact.size_bytes"},
            )
        with transaction(self.engine) as session:
            run = self._run(session, parts)
            assert run.id is not None
            session.execute(
                sa.delete(RunArtifactRow).where(
                    col(RunArtifactRow.run_id) == run.id, col(RunArtifactRow.path) == artifact.path
                )
            )
            session.add(RunArtifactRow(run_id=run.id, path=artifact.path, artifact=canonical, size=size))
        return self.get_run(name)

    def fail_silent_runs(self, timeout_seconds: float) -> int:
        """Mark RUNNING runs FAILED when nothing was heard from them for `timeout_seconds`."""
        cutoff = now() - timedelta(seconds=timeout_seconds)
        with transaction(self.engine) as session:
            result = session.execute(
                sa.update(RunRow)
                .where(col(RunRow.state) == pb.RUN_STATE_RUNNING, col(RunRow.heartbeat_time) < cutoff)
                .values(
                    state=pb.RUN_STATE_FAILED,
                    end_time=sa.case((col(RunRow.start_time) > now(), col(RunRow.start_time)), else_=now()),
                    state_message=f"no heartbeat for {timeout_seconds:.0f}s: the process is gone",
                )
            )
        return int(result.rowcount)  # type: ignore[attr-defined]
