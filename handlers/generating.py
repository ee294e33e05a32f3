"""The streaming serving mode of a generation model: completion requests in, pieces out, one
decode step at a time with in-flight batching; runtime-neutral.

Both adapters drive it the same way: `admit` each new request (a bad one is answered at once),
then `step()` again and again; every step gives each running request one piece (a token, or an
empty piece while a non-streaming request is still being generated; the last piece is final).
- TorchServe (continuousBatching): one handle() call is one step; the frontend re-queues a
  request whose piece was not final, beside the new ones (handlers/torchserve_handler.py).
- Triton (decoupled Python model): a thread steps while anything runs and sends each piece to
  its request's response sender; a cancelled request is `cancel`led (handlers/triton_streamer.py).
At most `max_sequences` decode together; the others wait their turn in order.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable

from handlers.batching import Failure, isolated
from handlers.completions import Completion, LanguageModel, Piece
from handlers.generation import DecodeLoop
from handlers.metrics import ModelMetrics, Sink
from handlers.plan import ServingPlan

log = logging.getLogger(__name__)


class Generating:
    def __init__(
        self, language: LanguageModel, max_sequences: int, metrics: ModelMetrics | None = None
    ):
        self.language = language
        self.metrics = metrics or ModelMetrics("", "")
        self.loop = DecodeLoop(language.model, language.decode, language.end_token)
        self.max_sequences = max_sequences
        self.queued: OrderedDict[Hashable, Completion] = OrderedDict()
        self.requests: dict[Hashable, Completion] = {}  # admitted, queued or decoding

    @classmethod
    def load(cls, model_dir: str | Path, sink: Sink | None = None) -> Generating:
        """The model of a model dir (an unpacked .mar, a Triton model version directory);
        `sink` is the runtime's way to publish metrics."""
        model_dir = Path(model_dir)
        plan = ServingPlan.load(model_dir)
        threads = int(os.environ.get("TORCHSHIP_THREADS", plan.serving.threads))
        language = LanguageModel(model_dir / plan.artifact, plan.task.generation, threads)
        log.info("loaded %s v%s (generation, %d thread(s))", plan.name, plan.version, threads)
        metrics = ModelMetrics(plan.name, plan.version, sink)
        metrics.loaded()
        return cls(language, plan.batching.max_batch_size, metrics)

    def admit(
        self, key: Hashable, body: Any, request_format: str = "completion"
    ) -> Failure | Completion:
        """Check a new request and queue it; its failure (400) is its whole answer."""
        with self.metrics.timed("preprocess"):
            completion = isolated("reading the request", lambda: self.language.read(body))
        if isinstance(completion, Failure):
            return self.refused(completion, request_format)
        self.metrics.request(request_format)
        self.requests[key] = completion
        self.queued[key] = completion
        return completion

    def refused(self, failure: Failure, request_format: str) -> Failure:
        """Count a request answered with its failure before it decoded a token."""
        self.metrics.request(request_format)
        self.metrics.outcome(failure.status, failure.reason)
        return failure

    def cancel(self, key: Hashable) -> None:
        """The client went away: the request leaves at once and frees its cache."""
        self.queued.pop(key, None)
        self.requests.pop(key, None)
        self.loop.cancel(key)

    @property
    def busy(self) -> bool:
        return bool(self.requests)

    @property
    def keys(self) -> list[Hashable]:
        return list(self.requests)

    def step(self) -> dict[Hashable, Piece]:
        """One decode step: the next piece of every decoding request (queued ones join first,
        up to max_sequences in all)."""
        while self.queued and len(self.loop.running) + len(self.loop.waiting) < self.max_sequences:
            key, completion = self.queued.popitem(last=False)
            self.loop.join(key, completion.prompt_ids, completion.sampling)
        pieces = {}
        with self.metrics.timed("model"):
            events = self.loop.step()
        if events:
            self.metrics.batch(len(events))
        for event in events:
            key, sequence = event.sequence.key, event.sequence
            completion = self.requests[key]
            ended = event.finish_reason is not None
            token = [] if event.token == self.language.end_token else [event.token]
            if completion.stream:
                pieces[key] = Piece(event.text, token, event.finish_reason)
            elif ended:  # the whole answer at once
                ids = [t for t in sequence.tokens if t != self.language.end_token]
                pieces[key] = Piece(sequence.text, ids, event.finish_reason)
            else:
                pieces[key] = Piece("", [])
            if ended:
                del self.requests[key]
        return pieces
