"""Protocols, found by name: how requests reach an engine and answers leave it, each
runtime-neutral. Generation: the model's own JSON, OpenAI completions and chat, vLLM's tensor
contract. One-pass models: KServe's v1 and v2 JSON (handlers/protocols/kserve.py) and the
model's own JSON (handlers/preprocessing/pipeline.py), and OpenAI embeddings for the task kinds
that offer it. A new protocol is one module and one line here; on TorchServe a protocol with a
`route` is reached at /predictions/<model>/<version>/<route>."""

from __future__ import annotations

from handlers.plan import ServingPlan
from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import (
    ForwardProtocol,
    ForwardWriter,
    GenerationProtocol,
    ModelFacts,
    Writer,
)
from handlers.protocols.completion import NativeCompletion
from handlers.protocols.openai_chat import OpenAIChat
from handlers.protocols.openai_completions import OpenAICompletions
from handlers.protocols.openai_embeddings import OpenAIEmbeddings
from handlers.protocols.vllm_tensors import VLLMTensors

GENERATION_PROTOCOLS: dict[str, GenerationProtocol] = {
    p.name: p for p in (NativeCompletion(), OpenAICompletions(), OpenAIChat(), VLLMTensors())
}
ROUTES = {p.route: p for p in GENERATION_PROTOCOLS.values() if p.route is not None}
FORWARD_PROTOCOLS: dict[str, ForwardProtocol] = {p.name: p for p in (OpenAIEmbeddings(),)}

__all__ = [
    "FORWARD_PROTOCOLS",
    "GENERATION_PROTOCOLS",
    "ROUTES",
    "ForwardProtocol",
    "ForwardWriter",
    "GenerationProtocol",
    "ModelFacts",
    "Writer",
]


def by_route(url_path: str | None) -> GenerationProtocol:
    """The protocol of a TorchServe route: the URL after the model's version ("" or none: the
    model's own)."""
    path = (url_path or "").strip("/")
    if not path:
        return GENERATION_PROTOCOLS["completion"]
    if path not in ROUTES:
        raise RequestError(
            f"unknown route {path!r}; this model answers {sorted(ROUTES)} and v1/models, "
            "tokenize, detokenize after its version, e.g. "
            "/predictions/<model>/<version>/v1/completions"
        )
    return ROUTES[path]


def forward_by_route(url_path: str | None, plan: ServingPlan) -> ForwardProtocol | None:
    """The protocol of a one-pass model's route (None: the model's own JSON, or KServe's); only
    the protocols its task kind offers and that serve the model have a route."""
    path = (url_path or "").strip("/")
    if not path:
        return None
    offered = [FORWARD_PROTOCOLS[name] for name in plan.task.serving.protocols]
    served = {p.route: p for p in offered if p.serves(plan)}
    if path in served:
        return served[path]
    known = {p.route: p for p in FORWARD_PROTOCOLS.values()}
    why = f" ({path} needs {known[path].needs})" if path in known else ""
    answers = f"{sorted(served)} after its version" if served else "no route after its version"
    raise RequestError(
        f"unknown route {path!r} for {plan.name}{why}; it answers its own JSON at "
        f"/predictions/{plan.name}[/<version>] and {answers}"
    )
