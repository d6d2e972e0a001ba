"""Experiment tracking for training scripts: `start_run`, metrics, artifacts and models."""

from atelier.tracking.run import ActiveRun, start_run

__all__ = ["ActiveRun", "start_run"]
