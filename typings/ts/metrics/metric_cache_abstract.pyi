from ts.metrics.metric_abstract import MetricAbstract
from ts.metrics.metric_type_enum import MetricTypes

class MetricCacheAbstract:
    """The backend worker's metrics cache: TorchServe's `context.metrics`."""

    def add_metric_to_cache(
        self,
        metric_name: str,
        unit: str,
        dimension_names: list[str] = ...,
        metric_type: MetricTypes = ...,
    ) -> MetricAbstract: ...
    def get_metric(self, metric_name: str, metric_type: MetricTypes = ...) -> MetricAbstract: ...
