"""Client of the monitor: accounting of GPU time and energy."""

from __future__ import annotations

from datetime import datetime

import grpc

from atelier.client.channel import ServiceClient, connect
from atelier.monitor.v1 import monitor_service_pb2 as pb
from atelier.monitor.v1 import monitor_service_pb2_grpc


class MonitorClient(ServiceClient):
    """Typed calls of `atelier.monitor.v1.MonitorService`."""

    service = "monitor"

    def __init__(self, channel: grpc.Channel, timeout: float = 30.0, address: str = "") -> None:
        super().__init__(channel, timeout, address)
        self.stub = monitor_service_pb2_grpc.MonitorServiceStub(channel)

    @classmethod
    def at(cls, address: str) -> MonitorClient:
        return cls(connect(address), address=address)

    def report_usage(self, node: str, report_id: str, samples: list[pb.UsageSample]) -> pb.ReportUsageResponse:
        request = pb.ReportUsageRequest(node=node, report_id=report_id, samples=samples)
        return self.call(self.stub.ReportUsage, request)

    def query_usage(
        self,
        project: str = "-",
        start: datetime | None = None,
        end: datetime | None = None,
        group_by: pb.UsageGrouping.ValueType = pb.USAGE_GROUPING_JOB,
    ) -> pb.QueryUsageResponse:
        request = pb.QueryUsageRequest(parent=f"projects/{project}", group_by=group_by)
        if start is not None:
            request.start_time.FromDatetime(start)
        if end is not None:
            request.end_time.FromDatetime(end)
        return self.call(self.stub.QueryUsage, request)

    def write_drift_samples(self, samples: list[pb.DriftSamples], timeout: float | None = None) -> int:
        """Add sampled inputs and predictions to their deployments' windows; returns the rows accepted."""
        request = pb.WriteDriftSamplesRequest(samples=samples)
        return self.call(self.stub.WriteDriftSamples, request, timeout=timeout).accepted_rows

    def drift_report(self, deployment: str) -> pb.DriftReport:
        """The drift of `projects/{project}/deployments/{deployment}` now."""
        return self.call(self.stub.GetDriftReport, pb.GetDriftReportRequest(name=f"{deployment}/driftReport"))
