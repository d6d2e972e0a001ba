"""Drift of each deployment: windows of the samples inference sends, compared with references.

One window per deployment and model version (a deployment following an alias sends samples of the
new version after a switch, and those are compared with the new version's training data). The report
of a deployment is that of the model version it sent samples of last. A reference is built once per
model version and shared by its deployments; a failure to build one is remembered for a minute so that
a model without usable training data does not make the monitor read files on every round.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from atelier.errors import AtelierError, FailedPrecondition, NotFound
from atelier.names import parse_name
from services.monitor.drift import DriftReport, compare
from services.monitor.drift.samples import PREDICTION, SampleWindow
from services.monitor.references import LoadedReference, ReferenceLoader, as_reference_types

log = logging.getLogger(__name__)
DEPLOYMENT = "projects/{project}/deployments/{deployment}"
MODEL_VERSION = "projects/{project}/models/{model}/versions/{version}"
RETRY_FAILED_REFERENCE_SECONDS = 60.0


@dataclass(frozen=True)
class WindowSettings:
    max_rows: int = 5000
    max_age_seconds: float | None = 3600.0
    min_rows: int = 100
    """Rows a window needs before it is compared."""
    drift_share: float = 0.5


@dataclass(frozen=True)
class DeploymentDrift:
    """A computed report and what it compared."""

    deployment: str
    model_version: str
    reference: LoadedReference
    window_rows: int
    report: DriftReport
    time: datetime

    @property
    def labels(self) -> dict[str, str]:
        """`project`, `deployment`, `model`, `version` (the number), as inference's series name them."""
        deployment = parse_name(self.deployment, DEPLOYMENT)
        version = parse_name(self.model_version, MODEL_VERSION)
        number = version["version"].removeprefix("v")
        return {
            "project": deployment["project"],
            "deployment": deployment["deployment"],
            "model": version["model"],
            "version": number,
        }


@dataclass
class _Failed:
    error: AtelierError
    at: float


@dataclass
class DriftMonitor:
    loader: ReferenceLoader
    settings: WindowSettings = field(default_factory=WindowSettings)
    clock: Callable[[], float] = time.monotonic
    _windows: dict[tuple[str, str], SampleWindow] = field(default_factory=dict)
    _latest: dict[str, str] = field(default_factory=dict)
    _references: dict[str, LoadedReference | _Failed] = field(default_factory=dict)
    _reports: dict[str, DeploymentDrift] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    received_rows: dict[str, int] = field(default_factory=dict)
    """Rows received per deployment, since the monitor started."""

    def record(
        self,
        deployment: str,
        model_version: str,
        feature_names: Sequence[str],
        features: Sequence[float],
        predictions: Sequence[float],
    ) -> int:
        """Add sampled rows to the deployment's window for that model version; returns the rows added."""
        parse_name(deployment, DEPLOYMENT, "deployment")
        parse_name(model_version, MODEL_VERSION, "model_version")
        key = (deployment, model_version)
        with self._lock:
            window = self._windows.get(key)
            if window is None or window.feature_names != list(feature_names):
                window = SampleWindow(
                    feature_names,
                    max_rows=self.settings.max_rows,
                    max_age_seconds=self.settings.max_age_seconds,
                    clock=self.clock,
                )
                self._windows[key] = window
            self._latest[deployment] = model_version
        added = window.add(features, predictions)
        with self._lock:
            self.received_rows[deployment] = self.received_rows.get(deployment, 0) + added
        return added

    def report(self, deployment: str) -> DeploymentDrift:
        """The deployment's drift now (computed, and kept for the metrics)."""
        parse_name(deployment, DEPLOYMENT, "deployment")
        with self._lock:
            model_version = self._latest.get(deployment)
            window = self._windows.get((deployment, model_version or ""))
        if model_version is None or window is None:
            raise NotFound(f"no drift samples received for {deployment}: inference sends them once it serves requests")
        rows = len(window)
        if rows < self.settings.min_rows:
            raise FailedPrecondition(
                f"{deployment} has {rows} samples of {model_version} in its window; drift is judged from "
                f"{self.settings.min_rows} (ATELIER_MONITOR_DRIFT_MIN_ROWS)"
            )
        loaded = self._reference(model_version, window.feature_names)
        current = window.columns()
        renamed = {name: current[sent] for name, sent in zip(loaded.names, window.feature_names, strict=True)}
        if loaded.reference.prediction is not None:
            renamed[PREDICTION] = current[PREDICTION]
        compared = compare(
            loaded.reference,
            as_reference_types(loaded.reference, renamed),
            drift_share=self.settings.drift_share,
        )
        result = DeploymentDrift(deployment, model_version, loaded, rows, compared, datetime.now(UTC))
        with self._lock:
            self._reports[deployment] = result
        return result

    def refresh(self) -> None:
        """Compute every deployment's report (the periodic round that feeds the metrics)."""
        with self._lock:
            deployments = list(self._latest)
        for deployment in deployments:
            try:
                self.report(deployment)
            except AtelierError as error:
                with self._lock:
                    self._reports.pop(deployment, None)
                log.info("no drift report for %s: %s", deployment, error)
        self._forget_empty()

    def reports(self) -> list[DeploymentDrift]:
        """The latest computed report of each deployment."""
        with self._lock:
            return list(self._reports.values())

    def _reference(self, model_version: str, feature_names: list[str]) -> LoadedReference:
        with self._lock:
            known = self._references.get(model_version)
        if isinstance(known, LoadedReference) and len(known.names) == len(feature_names):
            return known
        if isinstance(known, _Failed) and self.clock() - known.at < RETRY_FAILED_REFERENCE_SECONDS:
            raise known.error
        try:
            loaded = self.loader.load(model_version, feature_names)
        except AtelierError as error:
            with self._lock:
                self._references[model_version] = _Failed(error, self.clock())
            raise
        with self._lock:
            self._references[model_version] = loaded
        return loaded

    def _forget_empty(self) -> None:
        """Windows whose rows have all aged out are dropped, and deployments left without one."""
        with self._lock:
            for key, window in list(self._windows.items()):
                if len(window) == 0:
                    del self._windows[key]
            for deployment, model_version in list(self._latest.items()):
                if (deployment, model_version) not in self._windows:
                    del self._latest[deployment]
                    self._reports.pop(deployment, None)
