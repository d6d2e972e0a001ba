"""When a request runs on the caller's thread (the event loop) instead of an instance thread.

A small model runs on the caller's thread (`run_now`): when nothing is queued, an instance is free,
there is no queue delay to wait for and the model's recent executions were short (`INLINE_MAX_NS`),
handing the request to an instance thread and its outcome back (two thread hops, each a wake-up and
a context switch) would cost more than the model itself. It takes an instance while it runs, so no
more than `instances` executions ever run at once, and it batches with nothing, exactly as an idle
instance thread would have taken it alone.

A slower model (up to `QUIET_INLINE_MAX_NS`) runs on the caller's thread only when the batcher is quiet:
nothing running, nothing queued, and idle since its last execution for at least a quarter of the
model's time (`QUIET_IDLE_SHARE`): one client waiting on each answer, where the two hops are most of
what the server adds. Requests that follow one another closely (several clients, or a backlog that
built up while the caller's thread was busy) go to the instance threads and batch there, so the
caller's thread is never held by one execution after another.
"""

from __future__ import annotations

from typing import Literal

INLINE_MAX_NS = 200_000
"""A model may run on the caller's thread when one of its last `RECENT` executions took at most this
long: well below what the event loop spends on a request's protocol work, so the loop never waits long
on a model. The shortest of several, because on a shared machine any one of them may have waited for a
core; a model that is slow is slow every time."""
RECENT = 8
QUIET_INLINE_MAX_NS = 5_000_000
"""The longest a model's recent executions may take for it to run on the caller's thread when the batcher
is quiet: the caller's thread (the event loop) answers nothing else meanwhile."""
QUIET_IDLE_SHARE = 4
"""A quiet batcher has been idle for at least 1/QUIET_IDLE_SHARE of the model's execution time when a
request comes: a client that sends its next request once answered leaves that gap (its round trip);
a backlog waiting on the caller's thread arrives right after the last execution."""


class InlinePolicy:
    """What one model's last executions took, and whether its next request may run on the caller's thread."""

    def __init__(self, enabled: bool, inline_max_ns: int = INLINE_MAX_NS) -> None:
        self.enabled = enabled
        """False where a request must always queue: a stateful model, or one with a queue delay to wait for."""
        self.inline_max_ns = inline_max_ns
        self.recent = [max(inline_max_ns, QUIET_INLINE_MAX_NS) + 1] * RECENT
        """Wall-clock nanoseconds of the last executions (a ring; too slow to run inline until measured)."""
        self.last_done_ns = 0
        """When the last execution ended (monotonic ns)."""
        self.executions = 0

    def mode(self, arrival_ns: int) -> Literal["any", "quiet"] | None:
        """How a request arriving at `arrival_ns` may run on the caller's thread: "any" when an instance
        is free, "quiet" only when nothing else runs, None not at all (it is queued)."""
        if not self.enabled:
            return None
        fastest = min(self.recent)
        if fastest <= self.inline_max_ns:
            return "any"
        if fastest <= QUIET_INLINE_MAX_NS and (arrival_ns - self.last_done_ns) * QUIET_IDLE_SHARE >= fastest:
            return "quiet"
        return None

    def executed(self, duration_ns: int) -> None:
        """Record an execution's wall-clock time (from any instance thread: a list, so `min` reads it safely)."""
        self.recent[self.executions % RECENT] = duration_ns
        self.executions += 1
