"""Precisions, feasibility messages, placement choices and the policy of one cycle."""

from __future__ import annotations

import pytest

from atelier.errors import FailedPrecondition, InvalidArgument
from atelier.scheduling import (
    FairShareUsage,
    Interconnect,
    JobQueue,
    JobRequest,
    Node,
    NodeAssignment,
    Placement,
    PolicyConfig,
    Precision,
    PriorityClass,
    RunningJob,
    check_feasible,
    declared_node,
    fair_share_factors,
    precisions_for,
    schedule,
)
from atelier.scheduling.catalogue import card_model
from atelier.scheduling.inventory import Card


def running(job_id: str, node: str, cards: tuple[int, ...], start: float = 0.0, **request: object) -> RunningJob:
    req = JobRequest(job_id, gpus_per_node=len(cards), **request)  # type: ignore[arg-type]
    return RunningJob(req, Placement((NodeAssignment(node, cards),)), start_time=start)


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((6, 0), {"fp32"}),
        ((7, 0), {"fp32", "fp16"}),
        ((7, 5), {"fp32", "fp16"}),
        ((8, 0), {"fp32", "fp16", "tf32", "bf16"}),
        ((8, 6), {"fp32", "fp16", "tf32", "bf16"}),
        ((8, 9), {"fp32", "fp16", "tf32", "bf16", "fp8"}),
        ((9, 0), {"fp32", "fp16", "tf32", "bf16", "fp8"}),
    ],
)
def test_precisions_follow_the_capability_table(capability: tuple[int, int], expected: set[str]) -> None:
    assert {p.value for p in precisions_for(capability)} == expected


def test_catalogue_models() -> None:
    assert card_model("A100-80").memory_gib == 80
    assert Precision.FP8 in card_model("H100").precisions
    assert Precision.BF16 not in card_model("V100M32").precisions
    with pytest.raises(InvalidArgument, match="unknown card model 'A200'; known: .*H100"):
        card_model("A200")


def test_invalid_requests_name_the_value() -> None:
    with pytest.raises(InvalidArgument, match="unknown precision 'fp4'; allowed: fp32, fp16, tf32, bf16, fp8"):
        JobRequest.of("j", gpus=1, precision="fp4")
    with pytest.raises(InvalidArgument, match=r"gpus \(6\) does not split evenly over 4 nodes"):
        JobRequest.of("j", gpus=6, nodes=4)
    with pytest.raises(InvalidArgument, match="unknown priority class 'urgent'; allowed: high, low, normal"):
        PolicyConfig().check(JobRequest("j", priority_class="urgent"))
    assert JobRequest.of("j", gpus=16).nodes == 2
    assert JobRequest.of("j", gpus=12, max_gpus_per_node=8).gpus_per_node == 6


def test_infeasible_request_is_rejected_with_the_closest_node() -> None:
    nodes = [declared_node("v", "V100M32", 8), declared_node("t", "T4", 4)]
    request = JobRequest.of("j", gpus=4, min_gpu_memory_gib=80, precision="bf16")
    with pytest.raises(FailedPrecondition) as error:
        check_feasible(request, nodes)
    assert str(error.value) == (
        "no node has 4 GPUs with >= 80 GiB and bf16; largest: 8 x V100M32 (32 GiB < 80 GiB, without bf16) on nodes/v"
    )


def test_gang_needing_more_nodes_than_exist_is_rejected() -> None:
    nodes = [declared_node("a1", "A100-80", 8), declared_node("v1", "V100M32", 8)]
    with pytest.raises(FailedPrecondition, match="the job needs 2 nodes with 8 GPUs with bf16; only 1 node has"):
        check_feasible(JobRequest.of("j", nodes=2, gpus_per_node=8, precision="bf16"), nodes)
    check_feasible(JobRequest.of("j", nodes=2, gpus_per_node=8), nodes)


def test_best_fit_keeps_big_bf16_cards_for_jobs_that_need_them() -> None:
    nodes = [declared_node("a100", "A100-80", 8), declared_node("v100", "V100M32", 8)]
    fp16 = JobRequest.of("fp16", gpus=2, min_gpu_memory_gib=16, precision="fp16")
    bf16 = JobRequest.of("bf16", gpus=2, precision="bf16")
    decisions = schedule(nodes, [fp16, bf16], [], 0.0, PolicyConfig())
    where = {s.job_id: s.placement.nodes for s in decisions.starts}
    assert where == {"fp16": ("v100",), "bf16": ("a100",)}


def test_best_fit_takes_the_tightest_node() -> None:
    nodes = [declared_node("n1", "A100-80", 8), declared_node("n2", "A100-80", 8)]
    busy = [running("r", "n2", (0, 1, 2, 3, 4, 5))]
    decisions = schedule(nodes, [JobRequest.of("j", gpus=2)], busy, 0.0, PolicyConfig())
    assert decisions.starts[0].placement.assignments == (NodeAssignment("n2", (6, 7)),)


def test_cards_come_from_one_nvlink_island() -> None:
    node = declared_node("n", "A100-80", 8, nvlink_island=4)
    busy = [running("r", "n", (0, 1, 4))]  # free: 2, 3 (island 0) and 5, 6, 7 (island 1)
    decisions = schedule([node], [JobRequest.of("j", gpus=2)], busy, 0.0, PolicyConfig())
    cards = decisions.starts[0].placement.assignments[0].cards
    assert cards == (2, 3)  # one island, and 5-6-7 stay together for a 3-card job
    assert node.link(2, 3) is Interconnect.NVLINK


def test_gang_is_all_or_nothing() -> None:
    nodes = [declared_node("n1", "H100", 8), declared_node("n2", "H100", 8)]
    busy = [running("r", "n2", (0,))]
    gang = JobRequest.of("gang", nodes=2, gpus_per_node=8)
    decisions = schedule(nodes, [gang], busy, 0.0, PolicyConfig())
    assert decisions.starts == []
    assert "gang" in decisions.waiting
    decisions = schedule(nodes, [gang], [], 0.0, PolicyConfig())
    assert [s.placement.nodes for s in decisions.starts] == [("n1", "n2")]


def test_unhealthy_cards_are_never_given() -> None:
    node = declared_node("n", "A10", 2, unhealthy=(0,))
    decisions = schedule([node], [JobRequest.of("a", gpus=1), JobRequest.of("b", gpus=1)], [], 0.0, PolicyConfig())
    assert [s.placement.assignments[0].cards for s in decisions.starts] == [(1,)]


def test_fair_share_factor_and_its_decay() -> None:
    day = 86400.0
    usage = FairShareUsage(0.0, {"heavy": 1000.0, "light": 0.0})
    factors = fair_share_factors(usage, {"heavy": 1, "light": 1}, [])
    assert factors["heavy"] == pytest.approx(2 ** (-1 / 0.5))
    assert factors["light"] == 1.0
    busy = [running("r", "n", (0,), project="light")]
    later = usage.advance(7 * day, busy, half_life_s=7 * day)
    assert later.gpu_seconds["heavy"] == pytest.approx(500.0)  # one half-life
    assert later.gpu_seconds["light"] == pytest.approx(7 * day / (2 * 0.6931471805599453), rel=1e-6)


def test_fair_share_orders_projects_within_a_class() -> None:
    node = declared_node("n", "T4", 1)
    usage = FairShareUsage(0.0, {"heavy": 10_000.0})
    jobs = [JobRequest("h", project="heavy", submit_time=0.0), JobRequest("l", project="light", submit_time=5.0)]
    decisions = schedule([node], jobs, [], 10.0, PolicyConfig(), usage)
    assert [s.job_id for s in decisions.starts] == ["l"]


def test_aging_lets_an_old_low_job_overtake() -> None:
    config = PolicyConfig()
    old_low = JobRequest("old", priority_class="low", project="a", submit_time=0.0)
    new_normal = JobRequest("new", priority_class="normal", project="b", submit_time=2 * 86400.0 - 60)
    heavy_b = FairShareUsage(0.0, {"b": 1.0, "a": 0.0})
    queue = JobQueue([old_low, new_normal])
    order = [j.job_id for j in queue.ordered(2 * 86400.0, config, fair_share_factors(heavy_b, {}, ["a", "b"]))]
    assert order == ["old", "new"]
    early = [j.job_id for j in queue.ordered(60.0, config, {"a": 1.0, "b": 1.0})]
    assert early == ["new", "old"]


def test_quota_holds_a_project_back() -> None:
    nodes = [declared_node("n", "A10", 8)]
    config = PolicyConfig(gpu_quotas={"p": 4})
    busy = [running("r", "n", (0, 1, 2), project="p")]
    jobs = [JobRequest.of("big", gpus=2, project="p"), JobRequest.of("ok", gpus=1, project="p", submit_time=1)]
    decisions = schedule(nodes, jobs, busy, 10.0, config)
    assert [s.job_id for s in decisions.starts] == ["ok"]
    assert decisions.waiting["big"].startswith("waiting: quota (project p holds 3 of its 4 GPUs")


def test_backfill_never_delays_the_reservation() -> None:
    nodes = [declared_node("n1", "A100-80", 4), declared_node("n2", "A100-80", 4)]
    busy = [running("r1", "n1", (0, 1, 2), max_runtime_s=100.0), running("r2", "n2", (0, 1), max_runtime_s=500.0)]
    head = JobRequest.of("head", gpus=4, max_runtime_s=1000.0, submit_time=0)
    long_job = JobRequest.of("long", gpus=1, max_runtime_s=1000.0, priority_class="low", submit_time=1)
    short_job = JobRequest.of("short", gpus=1, max_runtime_s=50.0, priority_class="low", submit_time=2)
    decisions = schedule(nodes, [head, long_job, short_job], busy, 10.0, PolicyConfig())
    (reservation,) = decisions.reservations
    assert (reservation.job_id, reservation.start_time, reservation.nodes) == ("head", 100.0, ("n1",))
    starts = {s.job_id: s.placement.nodes for s in decisions.starts}
    assert starts["long"] == ("n2",)  # off the reserved node
    assert starts["short"] == ("n1",)  # ends (t=60) before the reservation (t=100)
    assert starts.keys() == {"long", "short"}


def test_without_backfill_the_head_blocks_the_queue() -> None:
    from atelier.scheduling import fifo_first_fit

    nodes = [declared_node("n1", "A10", 2)]
    busy = [running("r", "n1", (0,))]
    jobs = [JobRequest.of("head", gpus=2, submit_time=0), JobRequest.of("small", gpus=1, submit_time=1)]
    decisions = schedule(nodes, jobs, busy, 5.0, fifo_first_fit())
    assert decisions.starts == []
    assert decisions.waiting["small"] == "waiting: behind head"


def test_preemption_stops_the_fewest_lowest_jobs() -> None:
    nodes = [declared_node("n1", "A100-80", 4), declared_node("n2", "A100-80", 4)]
    busy = [
        running("low-a", "n1", (0, 1), priority_class="low"),
        running("low-b", "n1", (2, 3), start=5.0, priority_class="low"),
        running("normal", "n2", (0, 1, 2, 3), priority_class="normal"),
    ]
    config = PolicyConfig(
        classes={
            "low": PriorityClass("low", 0),
            "normal": PriorityClass("normal", 1000),
            "high": PriorityClass("high", 5000, preempt_after_s=60.0, preemptible=False),
        }
    )
    urgent = JobRequest.of("urgent", gpus=2, priority_class="high", submit_time=0.0)
    assert schedule(nodes, [urgent], busy, 30.0, config).preemptions == []  # within its bound
    decisions = schedule(nodes, [urgent], busy, 100.0, config)
    # one victim is enough; of the two low jobs the younger loses less work; the normal job is spared
    assert [(p.job_id, p.for_job) for p in decisions.preemptions] == [("low-b", "urgent")]
    assert decisions.waiting["urgent"] == "waiting: preempting low-b"
    normal = JobRequest.of("n", gpus=2, priority_class="normal", submit_time=0.0)
    assert schedule(nodes, [normal], busy, 10_000.0, config).preemptions == []  # its class has no bound


def test_a_node_model_mix_is_described() -> None:
    cards = (
        Card(0, "T4", card_model("T4").memory_bytes, (7, 5)),
        Card(1, "A10", card_model("A10").memory_bytes, (8, 6)),
    )
    node = Node("mixed", cards)
    decisions = schedule([node], [JobRequest.of("j", gpus=1, precision="bf16")], [], 0.0, PolicyConfig())
    assert decisions.starts[0].placement.assignments[0].cards == (1,)
    decisions = schedule([node], [JobRequest.of("j", gpus=1)], [], 0.0, PolicyConfig())
    assert decisions.starts[0].placement.assignments[0].cards == (0,)
