"""The monitor's drift series, read at scrape time from the latest report of each deployment.

Labels `project`, `deployment`, `model` and `version` (the registry number) match inference's
`model`/`version` pair once `deployment` is read as inference's `model` (the deployment id).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from atelier.names import parse_name
from services.monitor.drifts import DEPLOYMENT, DriftMonitor

LABELS = ["project", "deployment", "model", "version"]


class DriftCollector(Collector):
    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        dataset = GaugeMetricFamily(
            "atelier_monitor_dataset_drift",
            "1 when at least drift_share of the deployment's feature columns drifted from its training data.",
            labels=LABELS,
        )
        share = GaugeMetricFamily(
            "atelier_monitor_drifted_columns_share", "Share of feature columns that drifted.", labels=LABELS
        )
        prediction = GaugeMetricFamily(
            "atelier_monitor_prediction_drift",
            "1 when the predictions drifted from the training labels.",
            labels=LABELS,
        )
        score = GaugeMetricFamily(
            "atelier_monitor_drift_score",
            "A column's drift score: a p-value (ks, chisquare, z) or a distance (wasserstein, jensenshannon, psi).",
            labels=[*LABELS, "column", "test"],
        )
        drifted = GaugeMetricFamily(
            "atelier_monitor_column_drift", "1 when the column drifted.", labels=[*LABELS, "column", "test"]
        )
        window = GaugeMetricFamily(
            "atelier_monitor_drift_window_rows", "Rows in the window last compared.", labels=LABELS
        )
        received = CounterMetricFamily(
            "atelier_monitor_drift_samples_received",
            "Sampled rows received from inference.",
            labels=["project", "deployment"],
        )
        for result in self.monitor.reports():
            labels = list(result.labels.values())
            report = result.report
            dataset.add_metric(labels, float(report.features.drifted))
            share.add_metric(labels, report.features.share_drifted)
            window.add_metric(labels, result.window_rows)
            columns = list(report.features.columns)
            if report.prediction is not None:
                prediction.add_metric(labels, float(report.prediction.drifted))
                columns.append(report.prediction)
            for column in columns:
                score.add_metric([*labels, column.column, column.test.value], column.score)
                drifted.add_metric([*labels, column.column, column.test.value], float(column.drifted))
        for deployment, rows in sorted(dict(self.monitor.received_rows).items()):
            names = parse_name(deployment, DEPLOYMENT)
            received.add_metric([names["project"], names["deployment"]], rows)
        yield from (dataset, share, prediction, score, drifted, window, received)
