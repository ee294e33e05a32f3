"""The metrics catalogue (handlers/metrics.py) through Triton's `pb_utils.MetricFamily`.

Every model of the server registers the same families (Triton merges a family registered
again under the same name and kind); a series is created the first time its label
values are seen. Each call is a round trip to the server: ModelMetrics makes one per series a
second, from its own thread.
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils  # pyright: ignore[reportMissingModuleSource]  only in Triton: typings/

from handlers.metrics import METRICS, Metric


class TritonSink:
    def __init__(self):
        kinds = {"counter": pb_utils.MetricFamily.COUNTER, "gauge": pb_utils.MetricFamily.GAUGE}
        self.families = {
            m.name: pb_utils.MetricFamily(name=m.name, description=m.help, kind=kinds[m.kind])
            for m in METRICS
        }
        self.series: dict[tuple[str, tuple[str, ...]], pb_utils.Metric] = {}

    def record(self, metric: Metric, value: float, labels: tuple[str, ...]) -> None:
        series = self.series.get((metric.name, labels))
        if series is None:
            named = dict(zip(metric.label_names, labels))
            series = self.families[metric.name].Metric(labels=named)
            self.series[(metric.name, labels)] = series
        if metric.kind == "gauge":
            series.set(value)
        else:
            series.increment(value)
