"""The registry's Prometheus series, beside the RPC and process metrics every service has:
runs, model versions and metric points created, per project."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class RegistryMetrics:
    """Counters the servicer feeds as it creates things."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter("atelier_registry_runs_created", "Runs created.", ["project"], registry=registry)
        self.versions = Counter(
            "atelier_registry_model_versions_created", "Model versions registered.", ["project"], registry=registry
        )
        self.points = Counter(
            "atelier_registry_metric_points", "Metric points stored by runs.", ["project"], registry=registry
        )
