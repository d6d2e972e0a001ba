"""Short-lived tokens for jobs' processes: scoped to the job's project (as a member), acting as the
person who submitted it, expiring with the job's longest run time. Training scripts use them to
log runs and read datasets without anybody's own token. They are minted by the IAM service on the
scheduler's own service account, kept in memory only (never in the database) and handed to the
agent with the task; a scheduler that restarts mints new ones."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from atelier.client.iam import IamClient
from atelier.errors import AtelierError
from atelier.iam.v1 import resources_pb2 as res
from atelier.scheduler.v1 import agent_service_pb2 as agent

log = logging.getLogger(__name__)
DEFAULT_LIFETIME = timedelta(days=7)
MARGIN = timedelta(hours=1)


class JobTokens:
    """One token per job attempt, minted on first need."""

    def __init__(self, iam: Callable[[], IamClient]) -> None:
        self._iam = iam
        self._client: IamClient | None = None
        self._tokens: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def token_for(self, task: agent.Task) -> str:
        """The token of this task's job attempt ('' when it cannot be minted: the job then runs
        without one and its own calls are refused with a message naming the missing token)."""
        key = (task.job, task.attempt)
        with self._lock:
            known = self._tokens.get(key)
        if known is not None:
            return known
        project = task.job.split("/")[1]
        lifetime = task.max_run_time.ToTimedelta() if task.HasField("max_run_time") else DEFAULT_LIFETIME
        expire = datetime.now(UTC) + min(lifetime, DEFAULT_LIFETIME) + MARGIN
        principal = task.user if "/" in task.user else f"users/{task.user}"
        try:
            if self._client is None:
                self._client = self._iam()
            created = self._client.create_token(
                principal, f"job {task.job} attempt {task.attempt}", expire, f"projects/{project}", res.ROLE_MEMBER
            )
        except AtelierError as error:
            log.warning("no token for %s (attempt %d): %s", task.job, task.attempt, error)
            return ""
        with self._lock:
            self._tokens[key] = created.secret
        return created.secret

    def forget(self, live: set[tuple[str, int]]) -> None:
        """Drop the tokens of attempts no longer running."""
        with self._lock:
            for key in [k for k in self._tokens if k not in live]:
                del self._tokens[key]
