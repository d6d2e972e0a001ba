"""GPU telemetry as dcgm-exporter publishes it: names, label order, simulated marking, absent series,
energy from power over time, and the idle-allocated flag."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.scheduler.agent.discovery import DeclaredInventory
from services.scheduler.agent.telemetry.exporter import LABELS, DcgmCollector, Holder
from services.scheduler.agent.telemetry.sampler import Sampler
from services.scheduler.agent.telemetry.samples import CardSample
from services.scheduler.agent.telemetry.simulated import SimulatedTelemetry
from services.scheduler.catalogue import card_spec

INVENTORY = '{"cards": [{"model": "A100-80", "count": 2}]}'
HOLDER = Holder("projects/vision/jobs/train", "vision", "ana")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def render(collector: DcgmCollector) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return text, samples


def simulated(clock: Clock, idle_after: float = 60.0, busy: float = 90.0) -> tuple[SimulatedTelemetry, DcgmCollector]:
    cards = DeclaredInventory(INVENTORY, card_spec).inventory().cards
    return SimulatedTelemetry(cards, busy, clock), DcgmCollector("node-a", "", True, 5.0, idle_after)


def test_simulated_cards_carry_dcgm_names_labels_and_the_simulated_mark() -> None:
    clock = Clock()
    source, collector = simulated(clock)
    collector.update(source.sample({1}), {1: HOLDER}, clock.now)
    text, samples = render(collector)

    assert "# TYPE DCGM_FI_DEV_GPU_TEMP gauge" in text
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{" in text  # the exact name, no _total
    utilisation = {labels["gpu"]: value for labels, value in samples["DCGM_FI_DEV_GPU_UTIL"]}
    assert utilisation == {"0": 0.0, "1": 90.0}
    labels, _ = samples["DCGM_FI_DEV_FB_USED"][1]
    assert set(labels) == {*LABELS, "simulated"}  # (the client writes labels sorted; order means nothing)
    assert labels["simulated"] == "true"
    assert labels["device"] == "nvidia1"
    assert labels["modelName"] == "A100-80"
    assert labels["Hostname"] == "node-a"
    assert labels["UUID"].startswith("GPU-")
    assert {labels["gpu"] for labels, _ in samples["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"]} == {"0", "1"}
    info = samples["atelier_gpu_job_info"]
    assert [(i["gpu"], i["atelier_job"], i["project"], i["user"]) for i, _ in info] == [
        ("1", "projects/vision/jobs/train", "vision", "ana")
    ]


def test_energy_integrates_power_over_time() -> None:
    clock = Clock()
    source, _ = simulated(clock)
    first = source.sample({0})
    clock.now += 10.0
    second = source.sample({0})
    busy_power = second[0].power_w or 0.0
    idle_power = second[1].power_w or 0.0
    assert busy_power > idle_power > 0
    assert (second[0].energy_mj or 0) - (first[0].energy_mj or 0) == busy_power * 10 * 1000
    assert (second[1].energy_mj or 0) - (first[1].energy_mj or 0) == idle_power * 10 * 1000


def test_a_held_card_under_the_threshold_is_flagged_after_the_idle_time() -> None:
    clock = Clock()
    source, collector = simulated(clock, idle_after=60.0, busy=2.0)  # the job holds the card but barely uses it
    sampler = Sampler(source, collector, lambda: {0: HOLDER})
    collector.update(source.sample({0}), {0: HOLDER}, clock.now)
    clock.now += 30.0
    collector.update(source.sample({0}), {0: HOLDER}, clock.now)
    _, samples = render(collector)
    assert samples["atelier_gpu_allocated_idle_seconds"][0][1] == 30.0
    assert samples["atelier_gpu_allocated_idle"][0][1] == 0.0
    clock.now += 31.0
    collector.update(source.sample({0}), {0: HOLDER}, clock.now)
    _, samples = render(collector)
    assert samples["atelier_gpu_allocated_idle"][0][1] == 1.0
    source.busy_utilization = 50.0  # it got to work: the idle time starts again
    collector.update(source.sample({0}), {0: HOLDER}, clock.now)
    _, samples = render(collector)
    assert samples["atelier_gpu_allocated_idle_seconds"][0][1] == 0.0
    assert samples["atelier_gpu_allocated_idle"][0][1] == 0.0
    assert sampler.holders() == {0: HOLDER}


def test_what_a_card_cannot_report_is_absent_not_zero() -> None:
    sample = CardSample(0, "GPU-1", "00000000:01:00.0", "Tesla T4", gpu_util=40.0, gpu_temp=51.0)
    collector = DcgmCollector("node-b", "550.54", False, 5.0, 600.0)
    collector.update([sample], {}, 0.0)
    text, samples = render(collector)
    assert set(samples) == {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP"}
    labels, _ = samples["DCGM_FI_DEV_GPU_TEMP"][0]
    assert "simulated" not in labels
    assert labels["DCGM_FI_DRIVER_VERSION"] == "550.54"
    assert "DCGM_FI_PROF" not in text
