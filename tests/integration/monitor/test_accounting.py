"""Accounting through the monitor's API: reports add up per job, project and user over hours;
a retried report counts once; bad reports are refused whole (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from atelier.client.monitor import MonitorClient
from atelier.errors import InvalidArgument
from atelier.monitor.v1 import monitor_service_pb2 as pb

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def sample(job: str, card: str, start: datetime, seconds: float, joules: float, user: str = "ana") -> pb.UsageSample:
    made = pb.UsageSample(job=job, user=user, card_uuid=card, gpu_seconds=seconds, energy_joules=joules)
    made.start_time.FromDatetime(start)
    made.end_time.FromDatetime(start + timedelta(seconds=seconds))
    return made


def test_usage_adds_up_by_job_project_and_user(monitor: MonitorClient) -> None:
    train, tune, speech = "projects/vision/jobs/train", "projects/vision/jobs/tune", "projects/speech/jobs/asr"
    monitor.report_usage(
        "nodes/n1", "r1", [sample(train, "GPU-a", T0, 1800, 360_000), sample(train, "GPU-b", T0, 1800, 360_000)]
    )
    monitor.report_usage("nodes/n1", "r2", [sample(train, "GPU-a", T0 + timedelta(hours=1), 3600, 720_000)])
    monitor.report_usage("nodes/n2", "r1", [sample(tune, "GPU-c", T0, 3600, 1_800_000, user="ben")])
    monitor.report_usage("nodes/n2", "r2", [sample(speech, "GPU-d", T0, 900, 90_000, user="cy")])

    by_job = monitor.query_usage("vision")
    assert [(r.job, round(r.gpu_hours, 3), round(r.energy_kwh, 3), r.cards) for r in by_job.rows] == [
        (train, 2.0, 0.4, 2),
        (tune, 1.0, 0.5, 1),
    ]
    assert by_job.total.gpu_hours == pytest.approx(3.0)
    by_project = monitor.query_usage("-", group_by=pb.USAGE_GROUPING_PROJECT)
    assert {r.project: round(r.gpu_hours, 2) for r in by_project.rows} == {"vision": 3.0, "speech": 0.25}
    by_user = monitor.query_usage("vision", group_by=pb.USAGE_GROUPING_USER)
    assert {r.user: round(r.energy_kwh, 2) for r in by_user.rows} == {"ana": 0.4, "ben": 0.5}
    later = monitor.query_usage("vision", start=T0 + timedelta(hours=1))
    assert [(r.job, r.gpu_hours) for r in later.rows] == [(train, 1.0)]
    first_hour = monitor.query_usage("-", start=T0, end=T0 + timedelta(minutes=30))
    assert first_hour.total.gpu_hours == pytest.approx(2.25)
    assert by_job.rows[0].first_time.ToDatetime(UTC) == T0
    everything = monitor.query_usage(
        "-", start=datetime(1, 1, 1, tzinfo=UTC), end=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    )
    assert everything.total.gpu_hours == pytest.approx(3.25)


def test_a_retried_report_counts_once(monitor: MonitorClient) -> None:
    job = "projects/vision/jobs/train"
    first = monitor.report_usage("nodes/n1", "r-7", [sample(job, "GPU-a", T0, 60, 6000)])
    again = monitor.report_usage("nodes/n1", "r-7", [sample(job, "GPU-a", T0, 60, 6000)])
    assert (first.recorded_samples, first.duplicate) == (1, False)
    assert (again.recorded_samples, again.duplicate) == (0, True)
    assert monitor.query_usage("vision").total.gpu_hours == pytest.approx(60 / 3600)


def _far(made: pb.UsageSample) -> pb.UsageSample:
    made.end_time.seconds = 2**40  # past the year 9999: no Timestamp may hold it
    return made


@pytest.mark.parametrize(
    ("node", "samples", "message"),
    [
        ("n1", [], "node"),
        ("nodes/n1", [sample("vision/train", "GPU-a", T0, 1, 1)], "samples[1].job"),
        ("nodes/n1", [sample("projects/vision/jobs/train", "", T0, 1, 1)], "samples[1].card_uuid is empty"),
        ("nodes/n1", [sample("projects/vision/jobs/train", "GPU-a", T0, 10, -1)], "energy_joules must be a finite"),
        (
            "nodes/n1",
            [sample("projects/vision/jobs/train", "GPU-a", T0, 10, math.nan)],
            "energy_joules must be a finite",
        ),
        (
            "nodes/n1",
            [sample("projects/vision/jobs/train", "GPU-a", T0, 10, math.inf)],
            "energy_joules must be a finite",
        ),
        (
            "nodes/n1",
            [sample("projects/vision/jobs/train", "GPU-a", T0, 10, 1.7e308)],
            "samples[1].energy_joules 1.7e+308 is more than a card draws in its interval (10 s); allowed: 0 to "
            "110000 J (at most 10000 W)",
        ),
        ("nodes/n1", [pb.UsageSample(job="projects/v/jobs/t", card_uuid="GPU-a")], "needs start_time and end_time"),
        (
            "nodes/n1",
            [_far(sample("projects/vision/jobs/train", "GPU-a", T0, 10, 1))],
            "samples[1].end_time has seconds",
        ),
    ],
)
def test_bad_reports_are_refused_whole(
    monitor: MonitorClient, node: str, samples: list[pb.UsageSample], message: str
) -> None:
    good = sample("projects/vision/jobs/ok", "GPU-z", T0, 5, 5)
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        monitor.report_usage(node, "bad", [good, *samples])
    assert monitor.query_usage("-").rows == []


def test_a_sample_longer_than_its_interval_is_refused(monitor: MonitorClient) -> None:
    made = sample("projects/vision/jobs/train", "GPU-a", T0, 10, 1)
    made.gpu_seconds = 20
    with pytest.raises(InvalidArgument, match="longer than its interval"):
        monitor.report_usage("nodes/n1", "r", [made])
    with pytest.raises(InvalidArgument, match="is not after start_time"):
        monitor.query_usage("vision", start=T0, end=T0)


def test_a_query_from_past_the_year_9999_is_refused(monitor: MonitorClient) -> None:
    request = pb.QueryUsageRequest(parent="projects/vision", start_time=Timestamp(seconds=2**40))
    with pytest.raises(
        InvalidArgument, match=r"start_time has seconds 1099511627776 .* allowed: times from 0001-01-01"
    ):
        monitor.call(monitor.stub.QueryUsage, request)
