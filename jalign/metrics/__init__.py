"""Run metrics: JSONL + TensorBoard logging, terminal progress, throughput, curve plots."""

from jalign.metrics.logger import TENSORBOARD_DIR, MetricsLogger, to_host_scalars
from jalign.metrics.plot import curves_figure, plot_curves
from jalign.metrics.records import METRICS_JSONL, read_metrics, truncate_metrics
from jalign.metrics.throughput import Throughput

__all__ = [
    "METRICS_JSONL",
    "TENSORBOARD_DIR",
    "MetricsLogger",
    "Throughput",
    "curves_figure",
    "plot_curves",
    "read_metrics",
    "to_host_scalars",
    "truncate_metrics",
]
