"""The metrics catalogue (handlers/metrics.py) through Triton's `pb_utils.MetricFamily`.

Every model of the server registers the same families (Triton merges a family registered again
under the same name and kind); a series is created the first time its label values are seen.
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

from handlers.metrics import BUCKETS, METRICS, Metric


class TritonSink:
    def __init__(self):
        kinds = {
            "counter": pb_utils.MetricFamily.COUNTER,
            "gauge": pb_utils.MetricFamily.GAUGE,
            "histogram": pb_utils.MetricFamily.HISTOGRAM,
        }
        self.families = {
            m.name: pb_utils.MetricFamily(name=m.name, description=m.help, kind=kinds[m.kind])
            for m in METRICS
        }
        self.series: dict[tuple[str, tuple[str, ...]], object] = {}

    def record(self, metric: Metric, value: float, labels: tuple[str, ...]) -> None:
        series = self.series.get((metric.name, labels))
        if series is None:
            named = dict(zip(metric.label_names, labels))
            family = self.families[metric.name]
            series = (
                family.Metric(labels=named, buckets=list(BUCKETS))
                if metric.kind == "histogram"
                else family.Metric(labels=named)
            )
            self.series[(metric.name, labels)] = series
        if metric.kind == "counter":
            series.increment(value)
        elif metric.kind == "histogram":
            series.observe(value)
        else:
            series.set(value)
