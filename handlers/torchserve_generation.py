"""TorchServe's adapter for a generation model (continuousBatching): one handle() call is one
decode step (handlers/generating.py) for the new requests and every unfinished one; each gets
its next piece as one chunk of its response, and `context.stopping_criteria` tells the frontend
which requests are done (the others come back in the next batch).

A request's own protocol shapes its chunks: the model's route (`/predictions/<model>`) answers
JSON lines {"text", "token_ids", "finish_reason"}; OpenAI's routes after the version
(`.../<version>/v1/completions`, `.../v1/chat/completions`, handlers/openai_api.py) answer as
OpenAI does.

A request's own failure while decoding ends only its response: a 500 when nothing was sent yet,
else a last chunk carrying the error. If the loop itself dies (LoopDied, or a bug outside any
one request), the worker exits: TorchServe fails what it had in flight and starts a new one, so
a dead loop never keeps answering READY.
"""

from __future__ import annotations

import logging
from pathlib import Path

from handlers.batching import Failure, isolated
from handlers.completions import Completion, completion_json
from handlers.formats import FORMATS
from handlers.generating import Generating, end_process
from handlers.metrics import Sink
from handlers.openai_api import EVENT_STREAM, OpenAIAnswer, chat_template, read_openai, route_kind
from handlers.serving_core import JSON, Answer

log = logging.getLogger(__name__)


class ContinuousBatching:
    def __init__(self, model_dir: str | Path, sink: Sink | None = None):
        self.generating = Generating.load(model_dir, sink)
        self.template = chat_template(Path(model_dir) / FORMATS["pretrained"].file)
        self.openai: dict[str, OpenAIAnswer] = {}  # requests that came by an OpenAI route

    def admit(self, key: str, body, url_path: str | None) -> Failure | Completion:
        kind = isolated("reading the request", lambda: route_kind(url_path))
        request_format = f"openai-{kind}" if isinstance(kind, str) else "completion"

        def read() -> tuple:
            if kind is None:
                return body, None
            return read_openai(kind, body, self.template, self.generating.language.max_prompt_bytes)

        read_back = kind if isinstance(kind, Failure) else isolated("reading the request", read)
        if isinstance(read_back, Failure):
            return self.generating.refused(read_back, request_format)
        fields, answer = read_back
        admitted = self.generating.admit(key, fields, request_format)
        if isinstance(admitted, Completion) and answer is not None:
            answer.prompt_tokens = len(admitted.prompt_ids)
            self.openai[key] = answer  # kept only for an admitted request: nothing else stays
        return admitted

    def cancel(self, key: str) -> None:
        self.generating.cancel(key)
        self.openai.pop(key, None)

    def step(self, keys: list[str], bodies: list, url_paths: list, context) -> list:
        """One decode step; a dead loop ends the worker (TorchServe starts another)."""
        try:
            return self.step_all(keys, bodies, url_paths, context)
        except Exception:
            log.critical("the decode loop died; this worker exits for TorchServe to restart it")
            log.exception("the decode loop died")
            end_process()

    def step_all(self, keys: list[str], bodies: list, url_paths: list, context) -> list:
        generating = self.generating
        for gone in set(generating.keys) - set(keys):  # the frontend dropped it
            self.cancel(gone)
        started = set(generating.requests)  # their responses are open streams already
        answers, done = [""] * len(keys), [False] * len(keys)
        for i, key in enumerate(keys):
            if key in generating.requests:
                continue
            admitted = self.admit(key, bodies[i], url_paths[i])
            if isinstance(admitted, Failure):  # answered now, and done
                answer = Answer.failed(admitted)
                context.set_response_status(answer.status, answer.reason, i)
                context.set_response_content_type(i, JSON)
                answers[i], done[i] = answer.body, True
        streams = {key: completion.stream for key, completion in generating.requests.items()}
        pieces = generating.step() if generating.busy else {}
        for i, key in enumerate(keys):
            piece = pieces.get(key)
            if piece is None:
                continue
            stream = streams[key]
            context.set_response_content_type(
                i, EVENT_STREAM if stream and key in self.openai else JSON
            )
            if piece.error is not None and key not in started:  # nothing sent yet: a plain 500
                answer = Answer.failed(Failure(500, piece.error, "model"))
                context.set_response_status(answer.status, answer.reason, i)
                context.set_response_content_type(i, JSON)
                answers[i] = answer.body
            elif key in self.openai:
                answers[i] = self.openai[key].piece(piece)
            elif stream or piece.final:  # a non-streaming request's empty pieces send nothing
                answers[i] = completion_json(piece, stream)
            done[i] = piece.final
            if piece.final:
                self.openai.pop(key, None)
        # None: answered whole at its first step (a plain response: TorchServe would otherwise
        # send the last chunk of a stream that never started and the client would hang)
        stops = [
            stop if key in started else (None if stop else False) for key, stop in zip(keys, done)
        ]
        context.stopping_criteria = [lambda _, stop=stop: stop for stop in stops]
        return answers
