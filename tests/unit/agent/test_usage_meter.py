"""The agent's usage meter: GPU time and energy per job and card between rounds, batches with ids, and
retries that reuse the id."""

from __future__ import annotations

import pytest

from atelier.errors import Unavailable
from atelier.monitor.v1 import monitor_service_pb2 as pb
from services.scheduler.agent.telemetry.exporter import Holder
from services.scheduler.agent.telemetry.samples import CardSample
from services.scheduler.agent.telemetry.usage import UsageMeter

TRAIN = Holder("projects/vision/jobs/train", "vision", "ana")


def cards(energy_a: float, energy_b: float) -> list[CardSample]:
    return [
        CardSample(0, "GPU-a", "00000000:01:00.0", "A100", energy_mj=energy_a),
        CardSample(1, "GPU-b", "00000000:02:00.0", "A100", energy_mj=energy_b),
    ]


def test_time_and_energy_of_held_cards_only() -> None:
    meter = UsageMeter("nodes/n1", simulated=False, max_gap_s=5.0)
    meter.observe(cards(1_000_000, 5_000_000), {0: TRAIN}, 10.0)  # the first round only sets the baseline
    meter.observe(cards(1_300_000, 5_900_000), {0: TRAIN}, 11.0)
    meter.observe(cards(1_600_000, 6_800_000), {0: TRAIN}, 12.0)
    meter.flush()
    sent: list[tuple[str, str, list[pb.UsageSample]]] = []
    assert meter.send(lambda node, report, samples: sent.append((node, report, samples))) == 1
    [(node, _, samples)] = sent
    assert node == "nodes/n1"
    [sample] = samples
    assert (sample.job, sample.user, sample.card_uuid) == (TRAIN.job, "ana", "GPU-a")
    assert sample.gpu_seconds == pytest.approx(2.0)
    assert sample.energy_joules == pytest.approx(600.0)  # 600,000 mJ over two rounds; GPU-b was nobody's


def test_a_gap_longer_than_allowed_is_not_charged() -> None:
    meter = UsageMeter("nodes/n1", simulated=True, max_gap_s=5.0)
    meter.observe(cards(0, 0), {0: TRAIN}, 0.0)
    meter.observe(cards(10_000, 0), {0: TRAIN}, 60.0)  # the agent stalled for a minute
    meter.flush()
    assert meter.pending() == 0


def test_a_failed_report_is_retried_with_the_same_id() -> None:
    meter = UsageMeter("nodes/n1", simulated=True, max_gap_s=5.0)
    meter.observe(cards(0, 0), {0: TRAIN}, 0.0)
    meter.observe(cards(1000, 0), {0: TRAIN}, 1.0)
    meter.flush()
    ids: list[str] = []

    def down(node: str, report: str, samples: list[pb.UsageSample]) -> None:
        ids.append(report)
        raise Unavailable("monitor down")

    assert meter.send(down) == 0
    assert meter.pending() == 1
    meter.observe(cards(2000, 0), {0: TRAIN}, 2.0)
    meter.flush()
    delivered: list[str] = []
    assert meter.send(lambda node, report, samples: delivered.append(report)) == 2
    assert delivered[0] == ids[0]  # the same report id: the monitor drops a duplicate
    assert len(set(delivered)) == 2
    assert meter.pending() == 0


def test_pending_batches_are_bounded() -> None:
    meter = UsageMeter("nodes/n1", simulated=True, max_gap_s=5.0, max_batches=2)
    meter.observe(cards(0, 0), {0: TRAIN}, 0.0)
    for second in range(1, 5):
        meter.observe(cards(second * 1000, 0), {0: TRAIN}, float(second))
        meter.flush()
    assert meter.pending() == 2
    assert meter.dropped_batches == 2
