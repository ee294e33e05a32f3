"""TorchServe's entry point (`--handler`), shaped like TorchServe's custom-handler example: a
module-level `handle(data, context)` over a lazily initialised service object.

It only translates: TorchServe's request dicts and headers into the serving core's Requests,
and each Answer into the context's per-request status and content type plus handle()'s return
value. Everything else is the serving core's (handlers/engines/serving_core.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from handlers.plan import ServingPlan
from handlers.engines.serving_core import Answer, Request, ServingCore
from handlers.engines.forward import Forward
from handlers.adapters.torchserve_generation import ContinuousBatching
from handlers.adapters.torchserve_metrics import sink_of
from handlers.metrics import CLIENT_HEADER, client_label

if TYPE_CHECKING:
    from handlers.adapters.torchserve_context import DecodingContext, TorchServeContext

# a request as TorchServe hands it over: its body under "body" (or a form's fields by name)
TorchServeRequest = dict[str, Any]
# handle()'s return value: each request's body, in the batch's order
Bodies = Sequence[str | bytes | None]


class OnePass:
    """A forward model: each batch through the serving core, answered once per request."""

    def __init__(self, model_dir: str, context: TorchServeContext):
        self.core = ServingCore.load(model_dir, sink_of(context))
        self.forward: Forward[int] = Forward(self.core)

    def handle(self, data: list[TorchServeRequest], context: TorchServeContext) -> Bodies:
        for i, r in enumerate(data):
            # the URL after the model's version picks a protocol (e.g. .../1/v1/embeddings)
            route = context.get_request_header(i, "url_path")
            request = Request(
                request_body(r), content_type(context, i), route=route, client=client(context, i)
            )
            self.forward.admit(i, request)
        return answered(context, self.forward.step(), len(data))


class Decoding:
    """A generation model: one handle() call is one decode step (continuousBatching)."""

    def __init__(self, model_dir: str, context: TorchServeContext):
        self.generating = ContinuousBatching(model_dir, sink_of(context))

    def handle(self, data: list[TorchServeRequest], context: TorchServeContext) -> Bodies:
        keys = [context.request_ids[i] for i in range(len(data))]
        url_paths = [context.get_request_header(i, "url_path") for i in range(len(data))]
        bodies = [request_body(r) for r in data]
        clients = [client(context, i) for i in range(len(data))]
        # TorchServe's context has stopping_criteria; handle() sets it on any other
        return self.generating.step(
            keys, bodies, url_paths, cast("DecodingContext", context), clients
        )


# the serving task's engine (handlers/tasks.py) -> how TorchServe's calls reach it
ENGINES = {"forward": OnePass, "generate": Decoding}


class SpecHandler:
    """Serves any model of the spec; everything model-specific comes from its serving plan."""

    def __init__(self):
        self.initialized = False

    def initialize(self, context: TorchServeContext) -> None:
        model_dir: str = context.system_properties["model_dir"]
        engine = ServingPlan.load(Path(model_dir)).task.serving.engine
        self.engine = ENGINES[engine](model_dir, context)
        self.initialized = True

    def handle(self, data: list[TorchServeRequest], context: TorchServeContext) -> Bodies:
        return self.engine.handle(data, context)


def answered(context: TorchServeContext, answers: dict[int, Answer], size: int) -> Bodies:
    """A batch's answers into TorchServe's context: each one's status and content type, and its
    body as handle()'s return value for that request."""
    bodies: list[str | bytes | None] = [None] * size
    for index, answer in answers.items():
        context.set_response_content_type(index, answer.content_type)
        if answer.status != 200:
            context.set_response_status(answer.status, answer.reason, index)
        bodies[index] = answer.body
    return bodies


def request_body(request: TorchServeRequest) -> Any:
    """TorchServe puts a raw POST body under "body" (or "data" for form uploads)."""
    for key in ("body", "data"):
        if request.get(key) is not None:
            return request[key]
    return next(iter(request.values()), None) if request else None


def client(context: TorchServeContext, idx: int) -> str:
    """The gateway's client of the request (the header as the gateway names it), as the
    metrics count it."""
    sent = context.get_request_header(idx, CLIENT_HEADER)
    return client_label(sent if isinstance(sent, str) else None)


def content_type(context: TorchServeContext, idx: int) -> str | None:
    headers = context.get_all_request_header(idx) or {}
    value = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if value and value.split(";")[0].strip().lower() == "multipart/form-data":
        # A form upload (curl -F, perf_analyzer --service-kind torchserve): TorchServe hands the
        # field's bytes as "data" and the field's own type as headers[field]["content-type"]
        # (often empty, which means: sniff JSON, else the model's encoded input).
        part: dict[str, str] = next(
            (headers[k] for k in ("data", "body") if isinstance(headers.get(k), dict)),
            dict[str, str](),
        )
        return part.get("content-type") or ""
    return value


_service = SpecHandler()


def handle(data: list[TorchServeRequest] | None, context: TorchServeContext) -> Bodies | None:
    """TorchServe's call: first with data None to initialise (at worker start), then per batch."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
