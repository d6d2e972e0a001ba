"""The monitor's gRPC handlers: thin over `Accounting`."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from atelier.monitor.v1 import monitor_service_pb2 as pb
from atelier.monitor.v1 import monitor_service_pb2_grpc
from atelier.runtime.server import BlockingRunner
from atelier.runtime.timestamps import to_timestamp
from services.monitor.accounting import Accounting, Totals

Context = Any


class MonitorServicer(monitor_service_pb2_grpc.MonitorServiceServicer):
    def __init__(self, accounting: Accounting, run: BlockingRunner) -> None:
        self.accounting = accounting
        self.run = run

    async def ReportUsage(self, request: pb.ReportUsageRequest, context: Context) -> pb.ReportUsageResponse:
        recorded, duplicate = await self.run(
            self.accounting.report, request.node, request.report_id, list(request.samples)
        )
        return pb.ReportUsageResponse(recorded_samples=recorded, duplicate=duplicate)

    async def QueryUsage(self, request: pb.QueryUsageRequest, context: Context) -> pb.QueryUsageResponse:
        start = request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None
        end = request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None
        rows, total = await self.run(self.accounting.query, request.parent, start, end, request.group_by)
        return pb.QueryUsageResponse(rows=[usage_row(r) for r in rows], total=usage_row(total))


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
