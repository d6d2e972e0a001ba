"""The monitor's gRPC handlers: thin over `Accounting` and `DriftMonitor`."""

from __future__ import annotations

from typing import Any

from atelier.errors import InvalidArgument
from atelier.monitor.v1 import monitor_service_pb2 as pb
from atelier.monitor.v1 import monitor_service_pb2_grpc
from atelier.names import parse_name
from atelier.runtime.server import BlockingRunner
from atelier.runtime.timestamps import optional_datetime, to_timestamp
from services.monitor.accounting import Accounting, Totals
from services.monitor.drift import ColumnDrift
from services.monitor.drifts import DEPLOYMENT, DeploymentDrift, DriftMonitor, Samples

Context = Any


class MonitorServicer(monitor_service_pb2_grpc.MonitorServiceServicer):
    def __init__(
        self, accounting: Accounting, drift: DriftMonitor, run: BlockingRunner, run_drift: BlockingRunner | None = None
    ) -> None:
        self.accounting = accounting
        self.drift = drift
        self.run = run
        # Samples are stored on the drift threads, which run at a lower priority (`drift_nice`).
        self.run_drift = run_drift or run

    async def ReportUsage(self, request: pb.ReportUsageRequest, context: Context) -> pb.ReportUsageResponse:
        recorded, duplicate = await self.run(
            self.accounting.report, request.node, request.report_id, list(request.samples)
        )
        return pb.ReportUsageResponse(recorded_samples=recorded, duplicate=duplicate)

    async def QueryUsage(self, request: pb.QueryUsageRequest, context: Context) -> pb.QueryUsageResponse:
        start, end = optional_datetime(request, "start_time"), optional_datetime(request, "end_time")
        rows, total = await self.run(self.accounting.query, request.parent, start, end, request.group_by)
        return pb.QueryUsageResponse(rows=[usage_row(r) for r in rows], total=usage_row(total))

    async def WriteDriftSamples(
        self, request: pb.WriteDriftSamplesRequest, context: Context
    ) -> pb.WriteDriftSamplesResponse:
        rows = sum(len(s.predictions) for s in request.samples)
        if rows > MAX_DRIFT_ROWS:
            raise InvalidArgument(f"{rows} rows in one WriteDriftSamples; at most {MAX_DRIFT_ROWS} are allowed")
        samples = [
            Samples(s.deployment, s.model_version, list(s.feature_names), s.features, s.predictions)
            for s in request.samples
        ]
        accepted = await self.run_drift(self.drift.record_all, samples)
        return pb.WriteDriftSamplesResponse(accepted_rows=accepted)

    async def GetDriftReport(self, request: pb.GetDriftReportRequest, context: Context) -> pb.DriftReport:
        deployment = request.name.removesuffix("/driftReport")
        if deployment == request.name:
            raise InvalidArgument(f"invalid name {request.name!r}: expected {DEPLOYMENT}/driftReport")
        parse_name(deployment, DEPLOYMENT)
        return drift_report(await self.run(self.drift.report, deployment))


MAX_DRIFT_ROWS = 100_000


def column_drift(column: ColumnDrift) -> pb.ColumnDrift:
    return pb.ColumnDrift(
        column=column.column,
        kind=column.kind.value,
        test=column.test.value,
        score=column.score,
        threshold=column.threshold,
        drifted=column.drifted,
    )


def drift_report(result: DeploymentDrift) -> pb.DriftReport:
    features = result.report.features
    prediction = result.report.prediction
    return pb.DriftReport(
        name=f"{result.deployment}/driftReport",
        model_version=result.model_version,
        reference_dataset=result.reference.dataset_version,
        reference_file=result.reference.file,
        reference_rows=result.reference.reference.rows,
        window_rows=result.window_rows,
        dataset_drift=features.drifted,
        drift_share=features.drift_share,
        drifted_share=features.share_drifted,
        features=[column_drift(c) for c in features.columns],
        prediction=column_drift(prediction) if prediction is not None else None,
        compute_time=to_timestamp(result.time),
    )


def usage_row(totals: Totals) -> pb.UsageRow:
    return pb.UsageRow(
        project=totals.project,
        job=totals.job,
        user=totals.user,
        gpu_hours=totals.gpu_seconds / 3600.0,
        energy_kwh=totals.energy_joules / 3.6e6,
        cards=totals.cards,
        first_time=to_timestamp(totals.first_time),
        last_time=to_timestamp(totals.last_time),
        simulated=totals.simulated,
    )
