"""Our own metrics: the same names, labels and buckets on TorchServe and on Triton.

The catalogue (METRICS) is the one place they are defined: the build writes TorchServe's
metrics.yaml from it (TorchServe drops a backend metric it was not told about), the monitor
writes alert rules and dashboards against it, and each runtime's adapter registers it with its
own API (handlers/torchserve_metrics.py: `context.metrics`; handlers/triton_metrics.py:
`pb_utils.MetricFamily`). The serving core only calls ModelMetrics' methods, which know no
runtime. Times are in seconds, histograms use the buckets TorchServe's Prometheus client has
(it offers no others), so a query reads the same on both runtimes.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Protocol

log = logging.getLogger(__name__)
PREFIX = "torchship_"
# TorchServe's Prometheus Java client's default histogram buckets, in seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
MODEL_LABELS = ("model", "version")
STAGES = ("preprocess", "model", "postprocess")
# Why a request was refused (4xx); handlers.processing.RequestError carries one of these
REASONS = ("shape", "dtype", "range", "decode", "size", "invalid")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter | histogram | gauge
    help: str
    labels: tuple[str, ...] = ()  # beside MODEL_LABELS

    @property
    def label_names(self) -> tuple[str, ...]:
        return (*MODEL_LABELS, *self.labels)


STAGE_SECONDS = Metric(
    f"{PREFIX}stage_seconds",
    "histogram",
    "Seconds one request spent decoding/pre-processing or post-processing, or one executed "
    "batch running the model",
    ("stage",),
)
REQUESTS = Metric(
    f"{PREFIX}requests_total", "counter", "Requests our code received, by format", ("format",)
)
REJECTED = Metric(
    f"{PREFIX}rejected_total", "counter", "Requests answered 4xx, by reason", ("reason",)
)
FAILED = Metric(f"{PREFIX}failed_total", "counter", "Requests answered 5xx (our bug)", ("stage",))
BATCHES = Metric(f"{PREFIX}batches_total", "counter", "Model calls (executed batches)")
BATCH_ROWS = Metric(f"{PREFIX}batch_rows_total", "counter", "Rows in executed batches")
LOADS = Metric(
    f"{PREFIX}model_loads_total",
    "counter",
    "Model loads: a worker or stub (re)started, or the watchdog reloaded it",
)
METRICS = (STAGE_SECONDS, REQUESTS, REJECTED, FAILED, BATCHES, BATCH_ROWS, LOADS)


class Sink(Protocol):
    """A runtime's way to record one value of a catalogue metric with its label values."""

    def record(self, metric: Metric, value: float, labels: tuple[str, ...]) -> None: ...


class NoSink:
    """Outside a server (unit tests, in-process bench): nothing is recorded."""

    def record(self, metric: Metric, value: float, labels: tuple[str, ...]) -> None:
        return None


class ModelMetrics:
    """One model version's metrics; what the serving core calls."""

    def __init__(self, model: str, version: int | str, sink: Sink | None = None):
        self.model_labels = (model, str(version))
        self.sink: Sink = sink or NoSink()
        self.broken: set[str] = set()  # metrics that failed once (logged once)

    def record(self, metric: Metric, value: float, *labels: str) -> None:
        try:
            self.sink.record(metric, value, (*self.model_labels, *labels))
        except Exception:  # a metric never costs an answer; its first failure is logged
            if metric.name not in self.broken:
                self.broken.add(metric.name)
                log.exception("metric %s not recorded", metric.name)

    def loaded(self) -> None:
        self.record(LOADS, 1)

    def request(self, request_format: str) -> None:
        self.record(REQUESTS, 1, request_format)

    def rejected(self, reason: str) -> None:
        self.record(REJECTED, 1, reason if reason in REASONS else "invalid")

    def failed(self, stage: str) -> None:
        self.record(FAILED, 1, stage)

    def outcome(self, status: int, reason: str) -> None:
        """A refused (4xx, by reason) or failed (5xx, by stage) request; nothing for a 2xx."""
        if 400 <= status < 500:
            self.rejected(reason)
        elif status >= 500:
            self.failed(reason or "unknown")

    def batch(self, rows: int) -> None:
        self.record(BATCHES, 1)
        self.record(BATCH_ROWS, rows)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(STAGE_SECONDS, time.perf_counter() - start, stage)
