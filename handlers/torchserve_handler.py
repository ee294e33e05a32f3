"""TorchServe's entry point (`--handler`), shaped like TorchServe's custom-handler example: a
module-level `handle(data, context)` over a lazily initialised service object.

It only translates: TorchServe's request dicts and headers into the serving core's Requests,
and each Answer into the context's per-request status and content type plus handle()'s return
value. Everything else is the serving core's (handlers/serving_core.py).
"""

from __future__ import annotations

from pathlib import Path

from handlers.plan import ServingPlan
from handlers.serving_core import Answer, Request, ServingCore
from handlers.serving_modes import serving_mode
from handlers.torchserve_generation import ContinuousBatching
from handlers.torchserve_metrics import sink_of


class OnePass:
    """A forward model: each batch through the serving core, answered once per request."""

    def __init__(self, model_dir: str, context):
        self.core = ServingCore.load(model_dir, sink_of(context))
        self.mode = serving_mode(self.core)

    def handle(self, data: list[dict], context) -> list:
        requests = [Request(request_body(r), content_type(context, i)) for i, r in enumerate(data)]
        sink = ContextSink(context, len(requests))
        self.mode.serve(requests, sink)
        return sink.finals


class Decoding:
    """A generation model: one handle() call is one decode step (continuousBatching)."""

    def __init__(self, model_dir: str, context):
        self.generating = ContinuousBatching(model_dir, sink_of(context))

    def handle(self, data: list[dict], context) -> list:
        keys = [context.request_ids[i] for i in range(len(data))]
        url_paths = [context.get_request_header(i, "url_path") for i in range(len(data))]
        bodies = [request_body(r) for r in data]
        return self.generating.step(keys, bodies, url_paths, context)


# the serving task's engine (handlers/tasks.py) -> how TorchServe's calls reach it
ENGINES = {"forward": OnePass, "generate": Decoding}


class SpecHandler:
    """Serves any model of the spec; everything model-specific comes from its serving plan."""

    def __init__(self):
        self.initialized = False

    def initialize(self, context) -> None:
        model_dir = context.system_properties["model_dir"]
        engine = ServingPlan.load(Path(model_dir)).task.serving.engine
        self.engine = ENGINES[engine](model_dir, context)
        self.initialized = True

    def handle(self, data: list[dict], context) -> list:
        return self.engine.handle(data, context)


class ContextSink:
    """A batch's answers into TorchServe's context: final ones become handle()'s return value
    (TorchServe's last chunk of that request), a non-final one is sent at once as a chunk."""

    def __init__(self, context, size: int):
        self.context = context
        self.finals: list = [None] * size

    def send(self, index: int, answer: Answer, final: bool = True) -> None:
        self.context.set_response_content_type(index, answer.content_type)
        if answer.status != 200:
            self.context.set_response_status(answer.status, answer.reason, index)
        if final:
            self.finals[index] = answer.body
            return
        # only a streaming mode gets here, inside a TorchServe worker
        from ts.handler_utils.utils import send_intermediate_predict_response

        # keyed by the request's index: TorchServe reads its status and headers by that index
        send_intermediate_predict_response(
            {index: answer.body},
            {index: self.context.request_ids[index]},
            "Intermediate Prediction success",
            answer.status,
            self.context,
        )


def request_body(request: dict):
    """TorchServe puts a raw POST body under "body" (or "data" for form uploads)."""
    for key in ("body", "data"):
        if request.get(key) is not None:
            return request[key]
    return next(iter(request.values()), None) if request else None


def content_type(context, idx: int) -> str | None:
    headers = context.get_all_request_header(idx) or {}
    value = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if value and value.split(";")[0].strip().lower() == "multipart/form-data":
        # A form upload (curl -F, perf_analyzer --service-kind torchserve): TorchServe hands the
        # field's bytes as "data" and the field's own type as headers[field]["content-type"]
        # (often empty, which means: sniff JSON, else the model's encoded input).
        part = next((headers[k] for k in ("data", "body") if isinstance(headers.get(k), dict)), {})
        return part.get("content-type") or ""
    return value


_service = SpecHandler()


def handle(data: list[dict] | None, context) -> list | None:
    """TorchServe's call: first with data None to initialise (at worker start), then per batch."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
