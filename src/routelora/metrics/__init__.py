"""Metrics of the benchmark tasks: answer metrics, caption metrics, and the registry task files name them by."""

from routelora.metrics.registry import METRICS, MetricSpec, compute_metric, metric_maximum

__all__ = ["METRICS", "MetricSpec", "compute_metric", "metric_maximum"]
