"""Protocols, found by name: how requests reach an engine and answers leave it, each
runtime-neutral. Generation: the model's own JSON, OpenAI completions and chat, vLLM's tensor
contract. Tensor models: handlers/protocols/kserve.py (KServe's v1 and v2 JSON) beside the model's
own JSON (handlers/preprocessing/pipeline.py). A new protocol is one module and one line here; on
TorchServe
a generation protocol with a `route` is reached at /predictions/<model>/<version>/<route>."""

from __future__ import annotations

from handlers.preprocessing.processing import RequestError
from handlers.protocols.base import GenerationProtocol, ModelFacts, Writer
from handlers.protocols.completion import NativeCompletion
from handlers.protocols.openai_chat import OpenAIChat
from handlers.protocols.openai_completions import OpenAICompletions
from handlers.protocols.vllm_tensors import VLLMTensors

GENERATION_PROTOCOLS: dict[str, GenerationProtocol] = {
    p.name: p for p in (NativeCompletion(), OpenAICompletions(), OpenAIChat(), VLLMTensors())
}
ROUTES = {p.route: p for p in GENERATION_PROTOCOLS.values() if p.route is not None}

__all__ = ["GENERATION_PROTOCOLS", "ROUTES", "GenerationProtocol", "ModelFacts", "Writer"]


def by_route(url_path: str | None) -> GenerationProtocol:
    """The protocol of a TorchServe route: the URL after the model's version ("" or none: the
    model's own)."""
    path = (url_path or "").strip("/")
    if not path:
        return GENERATION_PROTOCOLS["completion"]
    if path not in ROUTES:
        raise RequestError(
            f"unknown route {path!r}; this model answers {sorted(ROUTES)} after its version, "
            "e.g. /predictions/<model>/<version>/v1/completions"
        )
    return ROUTES[path]
