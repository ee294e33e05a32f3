"""TorchServe's adapter for a generation model (continuousBatching): one handle() call is one
decode step (handlers/engines/generating.py) for the new requests and every unfinished one; each
gets
its next piece as one chunk of its response, and `context.stopping_criteria` tells the frontend
which requests are done (the others come back in the next batch).

A request's protocol (handlers/protocols/, by the route after the model's version) reads it
and shapes its chunks: the model's own route (`/predictions/<model>`) answers JSON lines
{"text", "token_ids", "finish_reason"}; `.../<version>/v1/completions` and
`.../v1/chat/completions` answer as OpenAI does.

A request's own failure while decoding ends only its response: a 500 when nothing was sent yet,
else a last chunk carrying the error. If the loop itself dies (LoopDied, or a bug outside any
one request), the worker exits: TorchServe fails what it had in flight and starts a new one, so
a dead loop never keeps answering READY.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.engines.batching import Failure, isolated
from handlers.engines.completions import Completion, Piece
from handlers.formats import FORMATS
from handlers.engines.generating import Generating, end_process
from handlers.metrics import DIRECT, Sink
from handlers.protocols import GenerationProtocol, ModelFacts, Writer, by_route
from handlers.protocols.model_routes import ModelRoute, ServedModel, model_route
from handlers.engines.serving_core import JSON, Answer

if TYPE_CHECKING:
    from handlers.adapters.torchserve_context import DecodingContext

log = logging.getLogger(__name__)
# How long a lone stream decodes per round trip to TorchServe's frontend (handle() call): about
# 4x a round trip on the 2-core machine, and what a newcomer may wait for its first step
ALONE_BURST_S = 0.02


def chat_template(folder: Path) -> str | None:
    """The Jinja chat template of tokenizer_config.json, if the model has one."""
    config = folder / "tokenizer_config.json"
    if not config.exists():
        return None
    return json.loads(config.read_text(encoding="utf-8")).get("chat_template")


class ContinuousBatching:
    def __init__(self, model_dir: str | Path, sink: Sink | None = None):
        self.generating: Generating[str] = Generating.load(model_dir, sink)
        template = chat_template(Path(model_dir) / FORMATS["pretrained"].file)
        language = self.generating.language
        self.facts = ModelFacts(template, language.max_prompt_bytes)
        self.served = ServedModel(
            self.generating.metrics.model_labels[0],
            language.context_length,
            language.vocabulary,
            language,
            self.facts,
        )
        self.writers: dict[str, Writer] = {}  # admitted requests: each one's protocol writer

    def admit(
        self, key: str, body: Any, url_path: str | None, client: str = DIRECT
    ) -> Answer | Completion:
        """A new request queued, or its whole answer now (a refusal, in its protocol's shape)."""
        route = model_route(url_path)
        if route is not None:  # answered at once: nothing to decode
            return self.answer_now(route, url_path or "", body, client)
        protocol = isolated("reading the request", lambda: by_route(url_path))
        if isinstance(protocol, Failure):
            return Answer.failed(self.generating.refused(protocol, "completion", client))
        read = isolated("reading the request", lambda: protocol.read(body, self.facts))
        if isinstance(read, Failure):
            return refusal(self.generating.refused(read, protocol.name, client), protocol)
        fields, writer = read
        admitted = self.generating.admit(key, fields, protocol.name, client)
        if isinstance(admitted, Failure):
            return refusal(admitted, protocol)
        writer.admitted(admitted)
        self.writers[key] = writer  # kept only for an admitted request: nothing else stays
        return admitted

    def answer_now(self, route: ModelRoute, url_path: str, body: Any, client: str) -> Answer:
        """A route that needs no decoding (models, tokenize): its JSON answer, or its error."""
        self.generating.metrics.request(route.name, client)
        path = url_path.strip("/")
        answered = isolated(route.name, lambda: route.answer(path, body, self.served))
        if isinstance(answered, Failure):
            self.generating.metrics.outcome(answered.status, answered.reason)
            return refusal(answered, route)
        return Answer(body=json.dumps(answered))

    def cancel(self, key: str) -> None:
        self.generating.cancel(key)
        self.writers.pop(key, None)

    def step(
        self,
        keys: list[str],
        bodies: list[Any],
        url_paths: list[str | None],
        context: DecodingContext,
        clients: list[str],
    ) -> list[str | bytes]:
        """One decode step; a dead loop ends the worker (TorchServe starts another)."""
        try:
            return self.step_all(keys, bodies, url_paths, context, clients)
        except Exception:
            log.critical("the decode loop died; this worker exits for TorchServe to restart it")
            log.exception("the decode loop died")
            end_process()

    def step_all(
        self,
        keys: list[str],
        bodies: list[Any],
        url_paths: list[str | None],
        context: DecodingContext,
        clients: list[str],
    ) -> list[str | bytes]:
        generating = self.generating
        for gone in set(generating.keys) - set(keys):  # the frontend dropped it
            self.cancel(gone)
        started = set(generating.requests)  # their responses are open streams already
        answers: list[str | bytes] = [""] * len(keys)
        done = [False] * len(keys)
        for i, key in enumerate(keys):
            if key in generating.requests:
                continue
            answer = self.admit(key, bodies[i], url_paths[i], clients[i])
            if isinstance(answer, Answer):  # answered now, and done
                context.set_response_status(answer.status, answer.reason, i)
                context.set_response_content_type(i, JSON)
                answers[i], done[i] = answer.body, True
        pieces = generating.step() if generating.busy else {}
        self.decode_alone(pieces, started)
        for i, key in enumerate(keys):
            made = pieces.get(key)
            if not made:
                continue
            writer = self.writers[key]
            error = made[0].error
            if error is not None and key not in started:  # nothing sent yet: a plain 500
                answer = Answer.failed(Failure(500, error, "model"))
                context.set_response_status(answer.status, answer.reason, i)
                context.set_response_content_type(i, JSON)
                answers[i] = answer.body
            else:
                context.set_response_content_type(i, writer.content_type())
                answers[i] = "".join(writer.piece(piece) for piece in made)
            done[i] = key not in generating.requests  # its last choice ended
            if done[i]:
                self.writers.pop(key, None)
        # None: answered whole at its first step (a plain response: TorchServe would otherwise
        # send the last chunk of a stream that never started and the client would hang)
        stops = [
            stop if key in started else (None if stop else False) for key, stop in zip(keys, done)
        ]
        context.stopping_criteria = [lambda _, stop=stop: stop for stop in stops]
        return answers

    def decode_alone(self, pieces: dict[str, list[Piece]], started: set[str]) -> None:
        """A request decoding alone, past its first token, decodes on in this handle() call for up
        to ALONE_BURST_S, its tokens added to `pieces`: one frontend round trip per burst, not
        per token (a lone stream was 0.78x the stock generate() handler's tokens/s). A request
        that arrives meanwhile waits at most that long to join; the first token never waits."""
        generating = self.generating
        deadline = time.perf_counter() + ALONE_BURST_S
        while (
            len(generating.requests) == 1
            and not generating.queued
            and started.issuperset(generating.requests)
            and time.perf_counter() < deadline
        ):
            for key, made in generating.step().items():
                pieces.setdefault(key, []).extend(made)


def refusal(failure: Failure, protocol: GenerationProtocol | ModelRoute) -> Answer:
    """A refused request's answer, its body in the protocol's shape where it has one."""
    answer = Answer.failed(failure)
    shaped = protocol.error_body(failure.status, failure.message)
    return answer if shaped is None else replace(answer, body=shaped)
