"""The metrics catalogue (handlers/metrics.py) through Triton's `pb_utils.MetricFamily`.

Every model of the server registers the same families (Triton merges a family registered
again under the same name and kind); a series is created the first time its label
values are seen. Each call is a round trip to the server: ModelMetrics makes one per series a
second, from its own thread.
"""

from __future__ import annotations

import json

import triton_python_backend_utils as pb_utils  # pyright: ignore[reportMissingModuleSource]  only in Triton: typings/

from handlers.metrics import CLIENT_HEADER, DIRECT, METRICS, Metric, client_label

# tritonserver hands the gateway's header over as a request parameter (its command's
# --http-header-forward-pattern / --grpc-header-forward-pattern: scripts/runtimes/triton/server.py)
CLIENT_PARAMETER = CLIENT_HEADER.lower()


def client_of(request: pb_utils.InferenceRequest) -> str:
    """The gateway's client of a request, as the metrics count it."""
    parameters: str = request.parameters()
    if len(parameters) <= 2:  # "{}": the usual case, kept to one call
        return DIRECT
    sent = next(
        (v for k, v in json.loads(parameters).items() if k.lower() == CLIENT_PARAMETER), None
    )
    return client_label(sent if isinstance(sent, str) else None)


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
