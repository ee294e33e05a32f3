from ts.metrics.metric_type_enum import MetricTypes

class MetricAbstract:
    """One metric of the cache; each value is written to the worker's stdout as a [METRICS]
    line, which the frontend publishes when its metrics_config declares the metric."""

    metric_name: str
    unit: str
    dimension_names: list[str]
    metric_type: MetricTypes
    def __init__(
        self,
        metric_name: str,
        unit: str,
        dimension_names: list[str] | None = None,
        metric_type: MetricTypes = ...,
    ) -> None: ...
    def add_or_update(
        self, value: float, dimension_values: list[str], request_id: str = ""
    ) -> None: ...
