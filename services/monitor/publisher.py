"""Publishing each job's GPU time and energy to the registry, where the runs of the job and the
model versions registered from them show it.

A round sends the all-time totals of every job a report added to since the last successful round
(absolute totals, so sending one twice is harmless). The watermark moves only when every job of
the round was recorded: a registry that is down or refuses gets the same jobs again next round,
and a monitor that starts republishes the jobs changed in the last day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from atelier.client.registry import RegistryClient
from atelier.errors import AtelierError
from atelier.registry.v1 import resources_pb2 as pb
from services.monitor.accounting import Accounting, JobTotals

log = logging.getLogger(__name__)

START_LOOKBACK = timedelta(days=1)
# A report's rows carry the time it was received, set before its transaction commits; looking back
# a little before the last round's start catches a report that committed while the round read.
OVERLAP = timedelta(seconds=10)
CALL_TIMEOUT_SECONDS = 10.0
WARN_EVERY_SECONDS = 300.0


@dataclass(frozen=True)
class Round:
    """What one round did: jobs sent, runs the registry updated, and why it stopped early ('' if not)."""

    jobs: int
    runs: int
    error: str = ""


class UsagePublisher:
    """Sends changed jobs' totals to the registry with RecordJobUsage, one round at a time."""

    def __init__(
        self,
        accounting: Accounting,
        registry: Callable[[], RegistryClient],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.accounting = accounting
        self._connect = registry
        self._client: RegistryClient | None = None
        self._clock = clock
        self.watermark = clock() - START_LOOKBACK
        self._last_warning: datetime | None = None

    def publish(self) -> Round:
        """One round (the service runs it every `usage_publish_seconds`)."""
        started = self._clock()
        changed = self.accounting.jobs_changed_since(self.watermark)
        runs = 0
        try:
            for totals in changed:
                runs += self._registry().record_job_usage(totals.job, usage(totals), timeout=CALL_TIMEOUT_SECONDS)
        except AtelierError as error:
            self._warn(started, f"usage of {len(changed)} job(s) not sent to the registry, retried next round: {error}")
            return Round(len(changed), runs, str(error))
        self.watermark = started - OVERLAP
        return Round(len(changed), runs)

    def _registry(self) -> RegistryClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _warn(self, now: datetime, message: str) -> None:
        if self._last_warning is None or (now - self._last_warning).total_seconds() >= WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning("%s", message)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def usage(totals: JobTotals) -> pb.ResourceUsage:
    return pb.ResourceUsage(
        gpu_seconds=totals.gpu_seconds, energy_joules=totals.energy_joules, simulated=totals.simulated
    )
