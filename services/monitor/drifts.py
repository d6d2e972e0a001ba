"""Drift of each deployment: windows of the samples inference sends, compared with references.

One window per deployment and model version (a deployment following an alias sends samples of the
new version after a switch, and those are compared with the new version's training data). The report
of a deployment is that of the model version it sent samples of last. A reference is built once per
model version and shared by its deployments; a failure to build one is remembered for a minute so that
a model without usable training data does not make the monitor read files on every round.

With a `SampleStore`, each call's blocks are stored before they enter the windows (and before the call
is answered), and `restore` refills the windows from the store when the monitor starts, each block at
its age, so reports come back without new traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy.typing as npt

from atelier.errors import AtelierError, FailedPrecondition, NotFound
from atelier.names import parse_name
from services.monitor.drift import DriftReport, compare
from services.monitor.drift.samples import PREDICTION, SampleWindow, check_feature_names, checked_rows
from services.monitor.references import LoadedReference, ReferenceLoader, as_reference_types
from services.monitor.sample_store import SampleBlock, SampleStore

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


@dataclass(frozen=True)
class Samples:
    """Rows as a WriteDriftSamples call sends them: row-major features, one prediction per row."""

    deployment: str
    model_version: str
    feature_names: Sequence[str]
    features: Sequence[float] | npt.NDArray[Any]
    predictions: Sequence[float] | npt.NDArray[Any]


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
    _compared: dict[str, tuple[SampleWindow, int]] = field(default_factory=dict)
    """The window, and its revision, that each deployment's report compared."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    received_rows: dict[str, int] = field(default_factory=dict)
    """Rows received per deployment, since the monitor started."""

    store: SampleStore | None = None
    """Where windows are kept across restarts; None keeps them in memory only."""

    def record(
        self,
        deployment: str,
        model_version: str,
        feature_names: Sequence[str],
        features: Sequence[float] | npt.NDArray[Any],
        predictions: Sequence[float] | npt.NDArray[Any],
    ) -> int:
        """Add sampled rows to the deployment's window for that model version; returns the rows added."""
        return self.record_all([Samples(deployment, model_version, feature_names, features, predictions)])

    def record_all(self, samples: Sequence[Samples]) -> int:
        """Check every block, store them all (one transaction), then add them to their windows; returns
        the rows added. A bad block refuses the whole call: nothing is stored or added."""
        now = datetime.now(UTC)
        blocks = [self._checked(s, now) for s in samples]
        if self.store is not None:
            self.store.append(blocks)
        added = 0
        for block in blocks:
            rows = self._add(block, None)
            added += rows
            with self._lock:
                self.received_rows[block.deployment] = self.received_rows.get(block.deployment, 0) + rows
        return added

    def restore(self) -> int:
        """Refill the windows from the store (after pruning it): each block at the age it has on the wall
        clock, mapped to the windows' clock; returns the rows restored."""
        if self.store is None:
            return 0
        settings = self.settings
        now, ticks = datetime.now(UTC), self.clock()
        self.store.prune(now, settings.max_age_seconds, settings.max_rows)
        since = None if settings.max_age_seconds is None else now - timedelta(seconds=settings.max_age_seconds)
        restored = 0
        for block in self.store.blocks_since(since):
            age = max((now - block.receive_time).total_seconds(), 0.0)
            restored += self._add(block, ticks - age)
        self._forget_empty()
        return restored

    def prune(self) -> int:
        """Delete the stored blocks no window holds any more; returns how many."""
        if self.store is None:
            return 0
        return self.store.prune(datetime.now(UTC), self.settings.max_age_seconds, self.settings.max_rows)

    def _checked(self, samples: Samples, now: datetime) -> SampleBlock:
        parse_name(samples.deployment, DEPLOYMENT, "deployment")
        parse_name(samples.model_version, MODEL_VERSION, "model_version")
        names = list(samples.feature_names)
        check_feature_names(names)
        features, predictions = checked_rows(names, samples.features, samples.predictions)
        keep = self.settings.max_rows  # the rest would leave the window at once
        return SampleBlock(samples.deployment, samples.model_version, names, features[-keep:], predictions[-keep:], now)

    def _add(self, block: SampleBlock, at: float | None) -> int:
        key = (block.deployment, block.model_version)
        with self._lock:
            window = self._windows.get(key)
            if window is None or window.feature_names != block.feature_names:
                window = SampleWindow(
                    block.feature_names,
                    max_rows=self.settings.max_rows,
                    max_age_seconds=self.settings.max_age_seconds,
                    clock=self.clock,
                )
                self._windows[key] = window
            self._latest[block.deployment] = block.model_version
        return window.extend(block.features, block.predictions, at)

    def report(self, deployment: str) -> DeploymentDrift:
        """The deployment's drift now (computed, and kept for the metrics)."""
        parse_name(deployment, DEPLOYMENT, "deployment")
        with self._lock:
            model_version = self._latest.get(deployment)
            window = self._windows.get((deployment, model_version or ""))
        if model_version is None or window is None:
            raise NotFound(f"no drift samples received for {deployment}: inference sends them once it serves requests")
        revision = window.revision  # read before the rows: a later change makes the next round compare again
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
            self._compared[deployment] = (window, revision)
        return result

    def refresh(self) -> None:
        """Prune the store and compute the report of every deployment whose window changed since its
        last report (the periodic round that feeds the metrics; the same rows give the same report)."""
        try:
            self.prune()
        except AtelierError as error:
            log.warning("stored drift samples not pruned: %s", error)
        with self._lock:
            deployments = list(self._latest)
        for deployment in deployments:
            if not self._changed(deployment):
                continue
            try:
                self.report(deployment)
            except AtelierError as error:
                with self._lock:
                    self._reports.pop(deployment, None)
                    self._compared.pop(deployment, None)
                log.info("no drift report for %s: %s", deployment, error)
        self._forget_empty()

    def _changed(self, deployment: str) -> bool:
        """Whether the deployment's window is another, or holds other rows, than its report compared."""
        with self._lock:
            compared = self._compared.get(deployment) if deployment in self._reports else None
            window = self._windows.get((deployment, self._latest.get(deployment, "")))
        if compared is None or window is None:
            return True
        return compared[0] is not window or compared[1] != window.revision

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
                    self._compared.pop(deployment, None)
