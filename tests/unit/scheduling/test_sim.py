"""The simulator on a trace small enough to work out by hand, and the trace readers on the real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from atelier.errors import InvalidArgument
from atelier.scheduling import PolicyConfig, declared_node, fifo_first_fit
from atelier.scheduling.sim import (
    comparison_markdown,
    metrics,
    read_alibaba_nodes,
    read_alibaba_pods,
    read_csv_trace,
    replicate,
    run_simulation,
)

ALIBABA = Path("/work/shared/data/alibaba-gpu-v2023")

TRACE = """submit_time,duration,gpus,nodes,card_models,min_gpu_memory_gib,precision,project
0,100,2,,,,,a
0,50,2,,,,,b
10,30,1,,,,,a
20,10,4,,,,,b
30,5,1,,A100-80,,,a
"""


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(TRACE)
    return path


def test_small_trace_gives_the_hand_computed_figures(trace_file: Path) -> None:
    # One 4-GPU T4 node, FIFO: job-1 and job-2 start at 0 (4 GPUs); job-3 waits for job-2 (ends 50) and runs
    # 50-80; job-4 needs all 4 GPUs: FIFO blocks behind it, it starts when job-1 ends (100) and runs 100-110;
    # job-5 wants an A100 and is rejected at submission.
    jobs = read_csv_trace(trace_file)
    result = run_simulation([declared_node("t4", "T4", 4)], jobs, fifo_first_fit(), name="fifo")
    outcomes = {o.job_id: (o.first_start, o.end_time) for o in result.outcomes}
    assert outcomes == {
        "job-1": (0.0, 100.0),
        "job-2": (0.0, 50.0),
        "job-3": (50.0, 80.0),
        "job-4": (100.0, 110.0),
        "job-5": (None, None),
    }
    m = metrics(result)
    assert m.rejected == m.never_ran == 1
    assert m.completed == 4
    assert m.avg_jct_s == pytest.approx((100 + 50 + 70 + 90) / 4)
    assert m.makespan_s == 110.0
    assert m.gpu_utilisation == pytest.approx((200 + 100 + 30 + 40) / (4 * 110))
    assert m.share_received == pytest.approx({"a": 230 / 370, "b": 140 / 370})
    assert m.share_entitled == pytest.approx({"a": 0.5, "b": 0.5})
    assert m.p50_queue_s == pytest.approx(20.0)  # delays 0, 0, 40, 80, interpolated
    assert m.p99_queue_s == pytest.approx(40 + 0.97 * 40)


def test_backfill_starts_the_small_job_early(trace_file: Path) -> None:
    jobs = read_csv_trace(trace_file)
    result = run_simulation([declared_node("t4", "T4", 4)], jobs, PolicyConfig(), name="atelier")
    outcomes = {o.job_id: o.first_start for o in result.outcomes}
    assert outcomes["job-4"] == 100.0  # reserved for t=100: nothing delays it
    assert outcomes["job-3"] == 50.0  # ends at 80, before the reservation
    assert "atelier" in comparison_markdown([metrics(result)])


def test_replicate_is_deterministic(trace_file: Path) -> None:
    jobs = read_csv_trace(trace_file)
    copies = replicate(jobs, 3, 1000.0)
    assert len(copies) == 15
    assert [j.request.job_id for j in copies[-5:]] == [f"job-{i}-2" for i in range(1, 6)]
    assert copies[-1].request.submit_time == 2030.0


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("submit_time,duration,gpus,precision\n0,10,1,fp4\n")
    with pytest.raises(Exception, match=r"bad.csv:2: unknown precision 'fp4'"):
        read_csv_trace(path)


def test_alibaba_nodes() -> None:
    nodes = read_alibaba_nodes(ALIBABA)
    assert len(nodes) == 1213
    assert sum(len(n.cards) for n in nodes) == 6212
    first = nodes[0]
    assert (first.name, first.cards[0].model, len(first.cards), first.cpus) == ("openb-node-0000", "P100", 2, 64.0)


def test_alibaba_pods() -> None:
    jobs = read_alibaba_pods(ALIBABA)
    assert len(jobs) == 8152 - 1088  # CPU-only pods are left out
    by_id = {j.request.job_id: j for j in jobs}
    fractional = by_id["openb-pod-0001"]  # 460 milli-GPU, rounded up
    assert fractional.request.gpus == 1
    assert fractional.duration_s == 12902960 - 427061
    assert {j.request.priority_class for j in jobs} == {"low", "normal", "high"}
    constrained = [j for j in jobs if j.request.cards.allowed_models]
    assert len(constrained) > 2000
    accepted = {m for j in constrained for m in j.request.cards.allowed_models}
    assert accepted <= {"A10", "G2", "G3", "P100", "T4", "V100M16", "V100M32"}
    assert len({j.request.project for j in jobs}) == 6
    assert jobs == read_alibaba_pods(ALIBABA)  # deterministic


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("nan,10,1", r"bad.csv:2: submit_time must be a finite number of seconds >= 0, got 'nan'"),
        ("0,inf,1", r"bad.csv:2: duration must be a finite number"),
        ("0,10,1,inf", r"bad.csv:2: max_runtime must be a finite number"),
        ("0,10,x", r"bad.csv:2: invalid literal for int\(\)"),
    ],
)
def test_csv_values_that_could_never_replay_are_refused(tmp_path: Path, row: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"submit_time,duration,gpus,max_runtime\n{row}\n")
    with pytest.raises(InvalidArgument, match=expected):
        read_csv_trace(path)


def test_a_binary_trace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidArgument, match="bin.csv: not a CSV text file"):
        read_csv_trace(path)


def test_alibaba_files_of_another_shape_are_refused(tmp_path: Path) -> None:
    (tmp_path / "openb_node_list_gpu_node.csv").write_text("name,model\na,V100M16\n")
    (tmp_path / "openb_pod_list_gpuspec33.csv").write_text(
        "name,num_gpu,creation_time,deletion_time,cpu_milli,memory_mib\np,x,0,10,1000,1024\n"
    )
    with pytest.raises(InvalidArgument, match="not the Alibaba trace's format \\(no column sn, gpu"):
        read_alibaba_nodes(tmp_path)
    with pytest.raises(InvalidArgument, match="openb_pod_list_gpuspec33.csv:2: invalid literal for int"):
        read_alibaba_pods(tmp_path)
    with pytest.raises(InvalidArgument, match="cannot read .*nowhere"):
        read_alibaba_pods(tmp_path / "nowhere")


def test_a_node_holds_at_least_one_card() -> None:
    with pytest.raises(InvalidArgument, match="node 'a': -1 cards; a node holds 1 to 64"):
        declared_node("a", "A100-80", -1)
