"""Whether a request may run on the caller's thread, from what the model's last executions took."""

from __future__ import annotations

from services.inference.inline import INLINE_MAX_NS, QUIET_IDLE_SHARE, QUIET_INLINE_MAX_NS, RECENT, InlinePolicy


def test_an_unmeasured_model_queues() -> None:
    assert InlinePolicy(enabled=True).mode(10**12) is None


def test_one_short_execution_among_the_recent_ones_is_enough() -> None:
    policy = InlinePolicy(enabled=True)
    policy.executed(INLINE_MAX_NS)
    assert policy.mode(0) == "any"
    assert InlinePolicy(enabled=False).mode(0) is None


def test_a_slower_model_runs_inline_only_after_an_idle_gap() -> None:
    policy = InlinePolicy(enabled=True)
    took = QUIET_INLINE_MAX_NS // 2
    for _ in range(RECENT):
        policy.executed(took)
    policy.last_done_ns = 1_000_000_000
    assert policy.mode(policy.last_done_ns + took // QUIET_IDLE_SHARE - 1) is None
    assert policy.mode(policy.last_done_ns + took // QUIET_IDLE_SHARE) == "quiet"


def test_the_ring_forgets_the_oldest_execution() -> None:
    policy = InlinePolicy(enabled=True)
    policy.executed(1_000)
    for _ in range(RECENT):
        policy.executed(QUIET_INLINE_MAX_NS + 1)
    assert policy.mode(10**12) is None
