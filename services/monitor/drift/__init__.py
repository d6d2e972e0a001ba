"""Data and prediction drift, with Evidently 0.7's default tests and thresholds (pure functions, no I/O)."""

from services.monitor.drift.compare import (
    ColumnDrift,
    DatasetDrift,
    DriftReport,
    column_drift,
    compare,
    dataset_drift,
)
from services.monitor.drift.kinds import ColumnKind, infer_kind
from services.monitor.drift.reference import Reference
from services.monitor.drift.stattests import StatTest, default_test
from services.monitor.drift.window import SlidingWindow

__all__ = [
    "ColumnDrift",
    "ColumnKind",
    "DatasetDrift",
    "DriftReport",
    "Reference",
    "SlidingWindow",
    "StatTest",
    "column_drift",
    "compare",
    "dataset_drift",
    "default_test",
    "infer_kind",
]
