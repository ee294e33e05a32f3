"""The serving core: requests in, one answer per request out, for any runtime.

request -> rows (pre-processing, per request) -> batch (handlers/engines/batching.py) -> answer
(post-processing, KServe envelopes). Written once and imported by both runtimes' adapters
(handlers/adapters/torchserve_handler.py, handlers/adapters/triton_model.py), which only translate
their own
request and response objects. Nothing here imports a runtime.

Every request is isolated: a client's mistake is answered 400 with a JSON error body
{"code", "type", "message", "error"}, a bug of ours 500 naming the stage, and the other requests
of the batch still get their answers. How answers reach a runtime (one each, or a stream) is
the adapter's; handlers/engines/forward.py makes this core an engine (admit / step / cancel).
"""

from __future__ import annotations

import json
from http import HTTPStatus
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from numpy.typing import NDArray

from handlers.protocols import forward_by_route, kserve
from handlers.engines.batching import Batcher, Failure, Rows, isolated, model_failure
from handlers.metrics import DIRECT, ModelMetrics, Sink
from handlers.preprocessing.pipeline import Pipeline
from handlers.plan import ServingPlan
from handlers.runners import Runner, load_runner

log = logging.getLogger(__name__)
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    """One request as a runtime received it: a body (bytes, text, or JSON a runtime already
    decoded) and its content type, or the model's input tensors by the spec's names (Triton);
    `route`: the URL after the model's version, which picks a protocol (TorchServe's url_path)."""

    body: Any = None
    content_type: str | None = None
    tensors: Mapping[str, NDArray[Any]] | None = None
    route: str | None = None
    client: str = DIRECT  # the metrics' `client` label (handlers.metrics.client_label)


@dataclass(frozen=True)
class Answer:
    """One response: a status, a body (JSON text) and its content type; tensors for a tensor
    request. A failure also keeps its message, for runtimes with their own error objects."""

    status: int = 200
    body: str | bytes = ""
    content_type: str = JSON
    tensors: list[NDArray[Any]] | None = None
    message: str = ""
    failure: Failure | None = None

    @classmethod
    def failed(cls, failure: Failure) -> Answer:
        code, message = failure.status, failure.message
        # "error" is where KServe's protocols put the message; the rest is ours
        body = json.dumps(
            {
                "code": code,
                "type": "InvalidInput" if code < 500 else "InferenceError",
                "message": message,
                "error": message,
            }
        )
        return cls(status=code, body=body, message=message, failure=failure)

    @property
    def final(self) -> bool:
        return True  # one answer per request

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def reason(self) -> str:
        """The HTTP reason phrase of the status."""
        known = {status.value: status.phrase for status in HTTPStatus}
        return known.get(self.status, "Error")


class ServingCore:
    """One model's plan, pipeline and batcher; answers a batch of requests."""

    def __init__(self, plan: ServingPlan, model: Runner, metrics: ModelMetrics | None = None):
        self.plan = plan
        self.pipeline = Pipeline(plan)
        self.metrics = metrics or ModelMetrics(plan.name, plan.version)
        self.batcher = Batcher(plan, model, self.pipeline.whole_outputs, self.metrics)

    @classmethod
    def load(cls, model_dir: str | Path, sink: Sink | None = None) -> ServingCore:
        """The serving plan and the exported model of a model dir (an unpacked .mar, a Triton
        model version directory); `sink` is the runtime's way to publish metrics."""
        model_dir = Path(model_dir)
        plan = ServingPlan.load(model_dir)
        threads = int(os.environ.get("TORCHSHIP_THREADS", plan.serving.threads))
        model = load_runner(
            plan.format,
            model_dir / plan.artifact,
            plan.input_names,
            threads,
            plan.output_names,
            owner=(plan.name, plan.version),
        )
        log.info("loaded %s v%s (%s, %d thread(s))", plan.name, plan.version, plan.format, threads)
        metrics = ModelMetrics(plan.name, plan.version, sink)
        metrics.loaded()
        return cls(plan, model, metrics)

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """One answer per request, in order; never raises for one request's sake."""
        if len(requests) == 1 and requests[0].tensors is not None:
            return [self.answer_alone(requests[0].tensors, requests[0].client)]
        log.info("batch of %d request(s)", len(requests))  # shows server-side batching in logs
        rows = [self.read(r) for r in requests]
        self.batcher.run(rows)
        answers = [self.respond(request, r) for request, r in zip(requests, rows)]
        for request, r, answer in zip(requests, rows, answers):
            self.count(request, r, answer)
        return answers

    def answer_alone(self, tensors: Mapping[str, NDArray[Any]], client: str = DIRECT) -> Answer:
        """A tensor request alone in its call, the usual case at low load (Triton hands execute()
        one request): checked, run as it came and answered, with no batch to stack or split and
        one metrics update. Every microsecond here is one a client of the stock setup does not
        pay (docs/performance.md)."""
        started = time.perf_counter()
        inputs = isolated("reading the request", lambda: self.checked(tensors))
        checked = time.perf_counter()
        if isinstance(inputs, Failure):
            return self.refused(inputs, checked - started, client)
        try:
            outputs = self.batcher.model(inputs)
        except Exception as exc:
            log.exception("inference failed")
            return self.refused(model_failure(exc), checked - started, client)
        batch = 1 if self.batcher.whole_outputs else len(inputs[self.plan.inputs[0].name])
        model_s = time.perf_counter() - checked
        self.metrics.alone("tensors", checked - started, model_s, batch, client=client)
        return Answer(tensors=outputs)

    def refused(self, failure: Failure, preprocess_s: float, client: str) -> Answer:
        self.metrics.alone(
            "tensors", preprocess_s, status=failure.status, reason=failure.reason, client=client
        )
        return Answer.failed(failure)

    def count(self, request: Request, rows: Rows, answer: Answer) -> None:
        """The request by format, and why it was refused or failed, if it was."""
        self.metrics.request(request_format(request, rows), request.client)
        if answer.failure is not None:
            self.metrics.outcome(answer.failure.status, answer.failure.reason)

    # --- request -> rows ------------------------------------------------------------------

    def read(self, request: Request) -> Rows:
        """One request's model-input rows, or its failure."""
        with self.metrics.timed("preprocess"):
            return self.read_rows(request)

    def read_rows(self, request: Request) -> Rows:
        tensors = request.tensors
        if tensors is not None:
            rows = isolated("reading the request", lambda: self.read_tensors(tensors))
        elif request.route:
            rows = isolated("reading the request", lambda: self.read_routed(request))
        else:
            rows = isolated("pre-processing", lambda: self.parse(request))
        return Rows(failure=rows) if isinstance(rows, Failure) else rows

    def parse(self, request: Request) -> Rows:
        inputs, single, envelope = self.pipeline.parse_request(request.body, request.content_type)
        return Rows(inputs, single, envelope)

    def read_routed(self, request: Request) -> Rows:
        """A request in the protocol of its route, read into the model's own JSON."""
        protocol = forward_by_route(request.route, self.plan)
        if protocol is None:
            return self.parse(request)
        body, writer = protocol.read(request.body, self.plan)
        inputs, single, _ = self.pipeline.parse_json(body)
        return Rows(inputs, single, writer=writer)

    def read_tensors(self, tensors: Mapping[str, NDArray[Any]]) -> Rows:
        return Rows(self.checked(tensors), single=False)

    def checked(self, tensors: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """A runtime has checked dtype and shape against its config; the pipeline adds the
        spec's checks (value range, finiteness, the mask's shape)."""
        pipeline = self.pipeline
        rows = {t.name: pipeline.check_rows(t, tensors[t.name]) for t in self.plan.inputs}
        return pipeline.check_mask(rows)

    # --- rows -> answer -------------------------------------------------------------------

    def respond(self, request: Request, rows: Rows) -> Answer:
        if rows.failure is not None:
            return Answer.failed(rows.failure)
        if request.tensors is not None:  # tensors in, tensors out: no post-processing
            return Answer(tensors=rows.outputs)
        with self.metrics.timed("postprocess"):
            answer = isolated("post-processing", lambda: Answer(body=self.json_answer(rows)))
        return Answer.failed(answer) if isinstance(answer, Failure) else answer

    def json_answer(self, rows: Rows) -> str:
        """The JSON answer of one request, in the protocol it came in."""
        answers = self.pipeline.postprocess(rows.outputs)
        if rows.writer is not None:
            return json.dumps(rows.writer.answer(self.plan, rows.inputs, answers))
        if rows.envelope is not None:
            return json.dumps(kserve.answer(self.plan, rows.envelope, rows.outputs, answers))
        return json.dumps(answers[0] if rows.single else answers)


def request_format(request: Request, rows: Rows) -> str:
    """How the request came: model tensors (Triton), KServe v1/v2, our JSON, or encoded bytes or
    text (an image, a sentence)."""
    if request.tensors is not None:
        return "tensors"
    if rows.writer is not None:
        return rows.writer.name
    if rows.envelope is not None:
        return f"kserve-{rows.envelope.protocol}"
    body, content_type = request.body, (request.content_type or "").lower()
    if isinstance(body, (dict, list)) or "json" in content_type:
        return "json"
    head = body[:1] if isinstance(body, (bytes, bytearray, str)) else ""
    return "json" if head in ("{", b"{", "[", b"[") and not content_type else "encoded"
