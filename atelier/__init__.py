"""Atelier: the lab's MLOps platform. `atelier.start_run(...)` tracks a training run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atelier.tracking.run import ActiveRun


def start_run(experiment: str, params: dict[str, Any] | None = None, **options: Any) -> ActiveRun:
    """Start a tracked run; see `atelier.tracking.run.start_run`."""
    from atelier.tracking.run import start_run as start

    return start(experiment, params, **options)


__all__ = ["start_run"]
