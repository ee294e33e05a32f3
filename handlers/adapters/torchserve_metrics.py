"""The metrics catalogue (handlers/metrics.py) through TorchServe's `context.metrics`.

The worker writes each value as a [METRICS] log line; the frontend turns it into Prometheus
series on the metrics address, but only for metrics declared in the `metrics_config` file the
server started with (the build writes it from the same catalogue: scripts/runtimes/torchserve/
metrics_config.py), adding a Hostname label of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard

from handlers.metrics import HISTOGRAMS, METRICS, Metric, Sink

if TYPE_CHECKING:
    from ts.metrics.metric_abstract import MetricAbstract

    from handlers.adapters.torchserve_context import MetricsContext, TorchServeContext


SECONDS = {histogram.sum.name for histogram in HISTOGRAMS}


def unit(metric: Metric) -> str:
    return "seconds" if metric.name in SECONDS else "count"


class TorchServeSink:
    def __init__(self, context: MetricsContext):
        from ts.metrics.metric_type_enum import MetricTypes

        # TorchServe adds a counter's value to the series and sets a gauge's
        kinds = {"counter": MetricTypes.COUNTER, "gauge": MetricTypes.GAUGE}
        self.metrics: dict[str, MetricAbstract] = {
            m.name: context.metrics.add_metric_to_cache(
                m.name, unit(m), list(m.label_names), kinds[m.kind]
            )
            for m in METRICS
        }

    def record(self, metric: Metric, value: float, labels: tuple[str, ...]) -> None:
        self.metrics[metric.name].add_or_update(value, list(labels))


def has_metrics(context: object) -> TypeGuard[MetricsContext]:
    return getattr(context, "metrics", None) is not None


def sink_of(context: TorchServeContext) -> Sink | None:
    """The worker's sink; None where there is no metrics cache (the build's load check)."""
    return TorchServeSink(context) if has_metrics(context) else None
