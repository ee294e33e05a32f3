"""Our own metrics: the same names, labels and buckets on TorchServe and on Triton.

The catalogue (METRICS) is the one place they are defined: the build writes TorchServe's
metrics.yaml from it (TorchServe drops a backend metric it was not told about), the monitor
writes alert rules and dashboards against it, and each runtime's adapter registers it with its
own API (handlers/adapters/torchserve_metrics.py: `context.metrics`;
handlers/adapters/triton_metrics.py:
`pb_utils.MetricFamily`). The serving core only calls ModelMetrics' methods, which know no
runtime.

Publishing is the expensive part: on Triton each value is a round trip from the stub to the
server, on TorchServe a log line the frontend parses; one per request and stage cost Triton 40%
of its throughput (digits_cnn, 1 and 8 clients). So ModelMetrics sums what it is told and a
thread of its own publishes the sums once a second: one call per series, whatever the load. That
is why every published metric is a counter, the histograms included (they go out as Prometheus'
histogram series, `_bucket` with `le`, `_sum`, `_count`, which histogram_quantile() reads alike
on both runtimes), except the gauges: a level (requests running, waiting, the KV cache held) is
published as its last value. Times are in seconds.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

log = logging.getLogger(__name__)
PREFIX = "torchship_"
# the buckets of the stage-time histogram, in seconds (Prometheus' client default ones)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BOUNDS = (*(f"{b:g}" for b in BUCKETS), "+Inf")  # the `le` label values
MODEL_LABELS = ("model", "version")
# Why a request was refused (4xx); handlers.preprocessing.processing.RequestError carries one of
# these
REASONS = ("shape", "dtype", "range", "decode", "size", "invalid", "overload")
PUBLISH_EVERY_S = 1.0
# Who called: the gateway (scripts/gateway/) names the client in this header; a request that
# did not come through it is counted as DIRECT. Only names a spec may give are counted as sent,
# and at most MAX_CLIENTS of them, so a caller on the runtime's own port cannot grow the series.
CLIENT_HEADER = "X-Torchship-Client"
DIRECT, OTHER = "direct", "other"
MAX_CLIENTS = 64
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_clients: set[str] = set()


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    labels: tuple[str, ...] = ()  # beside MODEL_LABELS
    # a counter is published by its increments, a gauge by its last value
    kind: Literal["counter", "gauge"] = "counter"

    @property
    def label_names(self) -> tuple[str, ...]:
        return (*MODEL_LABELS, *self.labels)

    def __hash__(self) -> int:  # the name says which: a key of every recorded value, kept cheap
        return hash(self.name)


@dataclass(frozen=True)
class Histogram:
    """A histogram in seconds, published as Prometheus' three counter series."""

    name: str
    help: str
    labels: tuple[str, ...] = ()

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def bucket(self) -> Metric:
        return Metric(f"{self.name}_bucket", self.help, (*self.labels, "le"))

    @property
    def sum(self) -> Metric:
        return Metric(f"{self.name}_sum", self.help, self.labels)

    @property
    def count(self) -> Metric:
        return Metric(f"{self.name}_count", self.help, self.labels)

    @property
    def series(self) -> tuple[Metric, Metric, Metric]:
        return self.bucket, self.sum, self.count


STAGE = Histogram(
    f"{PREFIX}stage_seconds",
    "Seconds one request spent decoding/pre-processing or post-processing, or one executed "
    "batch running the model",
    ("stage",),
)
STAGE_SECONDS = STAGE.name
STAGE_BUCKET, STAGE_SUM, STAGE_COUNT = STAGE.series
# a generation model's latencies, as vLLM names them (vllm:time_to_first_token_seconds, ...)
TIME_TO_FIRST_TOKEN = Histogram(
    f"{PREFIX}time_to_first_token_seconds",
    "Seconds from a generation request's admission to its first token",
)
INTER_TOKEN_LATENCY = Histogram(
    f"{PREFIX}inter_token_latency_seconds", "Seconds between two tokens of one generation request"
)
E2E_REQUEST_LATENCY = Histogram(
    f"{PREFIX}e2e_request_latency_seconds",
    "Seconds from a generation request's admission to its last token",
)
HISTOGRAMS = (STAGE, TIME_TO_FIRST_TOKEN, INTER_TOKEN_LATENCY, E2E_REQUEST_LATENCY)
REQUESTS = Metric(
    f"{PREFIX}requests_total",
    "Requests our code received, by format and by the gateway's client",
    ("format", "client"),
)
REJECTED = Metric(f"{PREFIX}rejected_total", "Requests answered 4xx, by reason", ("reason",))
FAILED = Metric(f"{PREFIX}failed_total", "Requests answered 5xx (our bug)", ("stage",))
BATCHES = Metric(f"{PREFIX}batches_total", "Model calls (executed batches)")
BATCH_ROWS = Metric(f"{PREFIX}batch_rows_total", "Rows in executed batches")
LOADS = Metric(
    f"{PREFIX}model_loads_total",
    "Model loads: a worker or stub (re)started, or the watchdog reloaded it",
)
PROMPT_TOKENS = Metric(
    f"{PREFIX}prompt_tokens_total", "Prompt tokens of admitted generation requests"
)
GENERATION_TOKENS = Metric(f"{PREFIX}generation_tokens_total", "Tokens generated")
PREFIX_CACHE_QUERIES = Metric(
    f"{PREFIX}prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache"
)
PREFIX_CACHE_HITS = Metric(
    f"{PREFIX}prefix_cache_hits_total", "Prompt tokens found in the prefix cache (not prefilled)"
)
# speculative decoding, as vLLM's spec_decode_num_draft_tokens / _num_accepted_tokens
DRAFT_TOKENS = Metric(
    f"{PREFIX}spec_decode_draft_tokens_total",
    "Tokens a draft model proposed (speculative decoding)",
)
ACCEPTED_TOKENS = Metric(
    f"{PREFIX}spec_decode_accepted_tokens_total",
    "Proposed tokens the model kept (speculative decoding): accepted / draft = acceptance",
)
# a generation model's levels, as vLLM's vllm:num_requests_running / _waiting / kv_cache_usage_perc
REQUESTS_RUNNING = Metric(
    f"{PREFIX}num_requests_running", "Generation requests decoding now", kind="gauge"
)
REQUESTS_WAITING = Metric(
    f"{PREFIX}num_requests_waiting",
    "Generation requests admitted and waiting for a place in the batch (at most "
    "batching.max_waiting)",
    kind="gauge",
)
KV_CACHE_USAGE = Metric(
    f"{PREFIX}kv_cache_usage_perc",
    "Key/value positions the decode loop holds (padding included), as a fraction of "
    "max_batch_size x the context length",
    kind="gauge",
)
GAUGES = (REQUESTS_RUNNING, REQUESTS_WAITING, KV_CACHE_USAGE)
METRICS = (
    REQUESTS,
    REJECTED,
    FAILED,
    BATCHES,
    BATCH_ROWS,
    LOADS,
    PROMPT_TOKENS,
    GENERATION_TOKENS,
    PREFIX_CACHE_QUERIES,
    PREFIX_CACHE_HITS,
    DRAFT_TOKENS,
    ACCEPTED_TOKENS,
    *GAUGES,
    *(series for histogram in HISTOGRAMS for series in histogram.series),
)


def client_label(sent: str | None) -> str:
    """The `client` label of a request whose gateway header says `sent` (None: no header)."""
    if not sent:
        return DIRECT
    if sent in _clients:
        return sent
    if not CLIENT_NAME.fullmatch(sent):
        return OTHER
    if len(_clients) >= MAX_CLIENTS:
        return OTHER
    _clients.add(sent)
    return sent


class Sink(Protocol):
    """A runtime's way to add to one counter of the catalogue (or set one gauge), with its
    label values."""

    def record(self, metric: Metric, value: float, labels: tuple[str, ...]) -> None: ...


class Sums:
    """What was recorded since the last publication: counter increments, gauges' last values,
    and per histogram the observations in each bucket (not cumulative), their sum and their
    count."""

    def __init__(self):
        self.counters: dict[tuple[Metric, tuple[str, ...]], float] = {}
        self.gauges: dict[tuple[Metric, tuple[str, ...]], float] = {}
        self.observed: dict[tuple[Histogram, tuple[str, ...]], list[float]] = {}

    def add(self, metric: Metric, value: float, labels: tuple[str, ...]) -> None:
        key = (metric, labels)
        self.counters[key] = self.counters.get(key, 0) + value

    def set(self, metric: Metric, value: float, labels: tuple[str, ...]) -> None:
        self.gauges[(metric, labels)] = value

    def observe(self, histogram: Histogram, seconds: float, labels: tuple[str, ...]) -> None:
        slots = self.observed.setdefault((histogram, labels), [0] * (len(BOUNDS) + 2))
        slots[bisect.bisect_left(BUCKETS, seconds)] += 1
        slots[-2] += seconds
        slots[-1] += 1

    def increments(
        self, model_labels: tuple[str, ...]
    ) -> list[tuple[Metric, float, tuple[str, ...]]]:
        """Every counter's increment and gauge's value, the histograms' buckets cumulative as
        Prometheus has them."""
        out = [
            (metric, value, (*model_labels, *labels))
            for (metric, labels), value in [*self.counters.items(), *self.gauges.items()]
        ]
        for (histogram, labels), slots in self.observed.items():
            running = 0
            for bound, count in zip(BOUNDS, slots):
                running += count
                out.append((histogram.bucket, running, (*model_labels, *labels, bound)))
            out.append((histogram.sum, slots[-2], (*model_labels, *labels)))
            out.append((histogram.count, slots[-1], (*model_labels, *labels)))
        return out


class ModelMetrics:
    """One model version's metrics; what the serving core calls. With a sink, a daemon thread
    publishes the sums every PUBLISH_EVERY_S (and `flush()` at once)."""

    def __init__(self, model: str, version: int | str, sink: Sink | None = None):
        self.model_labels = (model, str(version))
        self.sink = sink
        self.sums, self.lock = Sums(), threading.Lock()
        self.broken: set[str] = set()  # metrics that failed once (logged once)
        self.stopped = threading.Event()
        if sink is not None:
            threading.Thread(target=self.publish, name="metrics", daemon=True).start()

    def publish(self) -> None:
        while not self.stopped.wait(PUBLISH_EVERY_S):
            self.flush()

    def flush(self) -> None:
        """Hand the sums to the runtime now; a metric never costs an answer, and a failing one
        is logged once."""
        with self.lock:
            sums, self.sums = self.sums, Sums()
        if self.sink is None:
            return
        for metric, value, labels in sums.increments(self.model_labels):
            try:
                self.sink.record(metric, value, labels)
            except Exception:
                if metric.name not in self.broken:
                    self.broken.add(metric.name)
                    log.exception("metric %s not recorded", metric.name)

    def close(self) -> None:
        self.stopped.set()
        self.flush()

    def add(self, metric: Metric, value: float, *labels: str) -> None:
        with self.lock:
            self.sums.add(metric, value, labels)

    def set(self, metric: Metric, value: float, *labels: str) -> None:
        """A gauge's value now (published at the next flush if no other comes first)."""
        with self.lock:
            self.sums.set(metric, value, labels)

    def loaded(self) -> None:
        self.add(LOADS, 1)

    def request(self, request_format: str, client: str = DIRECT) -> None:
        self.add(REQUESTS, 1, request_format, client)

    def rejected(self, reason: str) -> None:
        self.add(REJECTED, 1, reason if reason in REASONS else "invalid")

    def failed(self, stage: str) -> None:
        self.add(FAILED, 1, stage)

    def outcome(self, status: int, reason: str) -> None:
        """A refused (4xx, by reason) or failed (5xx, by stage) request; nothing for a 2xx."""
        if 400 <= status < 500:
            self.rejected(reason)
        elif status >= 500:
            self.failed(reason or "unknown")

    def alone(
        self,
        request_format: str,
        preprocess_s: float,
        model_s: float | None = None,
        rows: int = 1,
        status: int = 200,
        reason: str = "",
        client: str = DIRECT,
    ) -> None:
        """Everything one request answered alone records (handlers/engines/serving_core.py:
        answer_alone), under one lock: its format, its read and model times, its model call of
        `rows` rows, or why it was refused or failed."""
        with self.lock:
            sums = self.sums
            sums.add(REQUESTS, 1, (request_format, client))
            sums.observe(STAGE, preprocess_s, ("preprocess",))
            if model_s is not None:
                sums.observe(STAGE, model_s, ("model",))
                sums.add(BATCHES, 1, ())
                sums.add(BATCH_ROWS, rows, ())
        self.outcome(status, reason)

    def batch(self, rows: int) -> None:
        self.add(BATCHES, 1)
        self.add(BATCH_ROWS, rows)

    @contextmanager
    def timed(self, stage: str) -> Generator[None, None, None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(STAGE, time.perf_counter() - start, stage)

    def observe(self, histogram: Histogram, seconds: float, *labels: str) -> None:
        with self.lock:
            self.sums.observe(histogram, seconds, labels)
