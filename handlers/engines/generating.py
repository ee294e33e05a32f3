"""The streaming serving mode of a generation model: completion requests in, pieces out, one
decode step at a time with in-flight batching; runtime-neutral.

Both adapters drive it the same way: `admit` each new request (a bad one is answered at once),
then `step()` again and again; every step gives each running request a piece per choice (a
token, or an empty piece while a non-streaming request is still being generated); a request
with `n` choices decodes them as n sequences side by side and ends when the last one has.
- TorchServe (continuousBatching): one handle() call is one step; the frontend re-queues a
  request whose piece was not final, beside the new ones (handlers/adapters/torchserve_handler.py).
- Triton (decoupled Python model): a thread steps while anything runs and sends each piece to
  its request's response sender; a cancelled request is `cancel`led
  (handlers/adapters/triton_streamer.py).
At most `max_sequences` sequences decode together; the others wait their turn in order, at most
`max_waiting` of them (batching.max_waiting): beyond, a request is refused at once (429), never
queued without bound. A failure while decoding is its sequence's own: that request gets its
error (500), the others go on. Anything else is the loop's death: `LoopDied`, and the adapter
takes the worker or stub down so that the runtime restarts it (a dead loop must not read
READY).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any, Generic, Hashable, NoReturn, Self, TypeVar

from handlers.engines.batching import Failure, isolated
from handlers.engines.completions import MAX_SEED, Completion, LanguageModel, Logprob, Piece
from handlers.engines.generation import DecodeLoop, Event, Sequence
from handlers.engines.prefix_cache import PrefixCache
from handlers.engines.speculative import Speculator
from handlers.formats import folder_format
from handlers.metrics import (
    ACCEPTED_TOKENS,
    DRAFT_TOKENS,
    E2E_REQUEST_LATENCY,
    GENERATION_TOKENS,
    INTER_TOKEN_LATENCY,
    KV_CACHE_USAGE,
    PREFIX_CACHE_HITS,
    PREFIX_CACHE_QUERIES,
    PROMPT_TOKENS,
    REQUESTS_RUNNING,
    REQUESTS_WAITING,
    TIME_TO_FIRST_TOKEN,
    DIRECT,
    ModelMetrics,
    Sink,
)
from handlers.plan import ServingPlan

log = logging.getLogger(__name__)
# Tests kill the loop on purpose: a prompt equal to this variable's value raises LoopDied.
FAULT_PROMPT_ENV = "TORCHSHIP_TEST_KILL_LOOP_PROMPT"
K = TypeVar("K", bound=Hashable)  # how an adapter names its requests


class LoopDied(RuntimeError):
    """The decode loop cannot go on: the adapter ends the process, the runtime restarts it."""


def end_process() -> NoReturn:
    """What an adapter does when its loop died: the log written out, then the process gone
    at once (no clean-up that could hang), for the runtime to start a new one."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


class Clock(Generic[K]):
    """A generation model's latencies, as vLLM measures them: from a request's admission to
    its first token and to its last, and between two tokens of one sequence."""

    def __init__(self, metrics: ModelMetrics):
        self.metrics = metrics
        self.admitted_at: dict[K, float] = {}
        self.last_token: dict[tuple[K, int], float] = {}  # of each sequence that made one

    def admitted(self, key: K, prompt_tokens: int) -> None:
        self.admitted_at[key] = time.perf_counter()
        self.metrics.add(PROMPT_TOKENS, prompt_tokens)

    def token(self, key: K, index: int, now: float) -> None:
        previous = self.last_token.get((key, index))
        if previous is not None:
            self.metrics.observe(INTER_TOKEN_LATENCY, now - previous)
        elif not any(k == key for k, _ in self.last_token):  # the request's first token
            self.metrics.observe(TIME_TO_FIRST_TOKEN, now - self.admitted_at[key])
        self.last_token[(key, index)] = now
        self.metrics.add(GENERATION_TOKENS, 1)

    def ended(self, key: K, now: float) -> None:
        self.metrics.observe(E2E_REQUEST_LATENCY, now - self.admitted_at[key])
        self.forget(key)

    def forget(self, key: K) -> None:
        self.admitted_at.pop(key, None)
        for sequence in [s for s in self.last_token if s[0] == key]:
            del self.last_token[sequence]


class Generating(Generic[K]):
    def __init__(
        self,
        language: LanguageModel,
        max_sequences: int,
        metrics: ModelMetrics | None = None,
        max_waiting: int = 128,
        max_batched_tokens: int | None = None,
        prefix_cache_mb: int = 0,
        prefill_share: float = 0.8,
    ):
        self.language = language
        self.metrics = metrics or ModelMetrics("", "")
        self.loop = DecodeLoop(
            language.model,
            language.decode,
            language.end_token,
            language.grammars,
            max_batched_tokens,
            PrefixCache(prefix_cache_mb << 20) if prefix_cache_mb else None,
            language.max_padding,
            replace(language.pace, share=prefill_share) if prefill_share else None,
            speculator(language),
        )
        self.max_sequences = max_sequences
        self.max_waiting = max_waiting
        self.fault_prompt = os.environ.get(FAULT_PROMPT_ENV) or None
        self.queued: OrderedDict[K, Completion] = OrderedDict()
        self.requests: dict[K, Completion] = {}  # admitted, queued or decoding
        self.choices_left: dict[K, int] = {}  # of a decoding request: its choices not ended
        self.clock: Clock[K] = Clock(self.metrics)

    @classmethod
    def load(cls, model_dir: str | Path, sink: Sink | None = None) -> Self:
        """The model of a model dir (an unpacked .mar, a Triton model version directory);
        `sink` is the runtime's way to publish metrics."""
        model_dir = Path(model_dir)
        plan = ServingPlan.load(model_dir)
        threads = int(os.environ.get("TORCHSHIP_THREADS", plan.serving.threads))
        limits = plan.task.generation
        if limits is None:  # the spec requires it of a generation task
            raise ValueError(f"{plan.name}: a generation model's plan has no task.generation")
        batching = plan.batching
        language = LanguageModel(
            model_dir / plan.artifact,
            limits,
            threads,
            max(batching.max_batch_size, 1),
            folder_format(plan.format),
        )
        log.info("loaded %s v%s (generation, %d thread(s))", plan.name, plan.version, threads)
        metrics = ModelMetrics(plan.name, plan.version, sink)
        metrics.loaded()
        return cls(
            language,
            batching.max_batch_size,
            metrics,
            batching.max_waiting,
            batching.max_batched_tokens,
            limits.prefix_cache_mb,
            batching.prefill_share,
        )

    def admit(
        self, key: K, body: Any, request_format: str = "completion", client: str = DIRECT
    ) -> Failure | Completion:
        """Check a new request and queue it; its failure (4xx) is its whole answer."""
        completion = self.read(body, request_format, client)
        return completion if isinstance(completion, Failure) else self.enqueue(key, completion)

    def read(
        self, body: Any, request_format: str = "completion", client: str = DIRECT
    ) -> Failure | Completion:
        """A new request checked (tokenized): no state is kept, so it may run on any thread."""
        with self.metrics.timed("preprocess"):
            completion = isolated("reading the request", lambda: self.language.read(body))
        if isinstance(completion, Failure):
            return self.refused(completion, request_format, client)
        self.metrics.request(request_format, client)
        return completion

    def enqueue(self, key: K, completion: Completion) -> Failure | Completion:
        """Queue a checked request, or refuse it (429) when max_waiting already wait."""
        # those that join at the next step do not wait: the free places count on top
        if len(self.queued) >= self.max_waiting + max(self.free_places, 0):
            failure = Failure(
                429,
                f"{self.max_waiting} requests already wait for this model (batching."
                "max_waiting); retry later",
                "overload",
            )
            self.metrics.outcome(failure.status, failure.reason)
            return failure
        self.requests[key] = completion
        self.queued[key] = completion
        self.clock.admitted(key, len(completion.prompt_ids))
        return completion

    def refused(self, failure: Failure, request_format: str, client: str = DIRECT) -> Failure:
        """Count a request answered with its failure before it decoded a token."""
        self.metrics.request(request_format, client)
        self.metrics.outcome(failure.status, failure.reason)
        return failure

    def cancel(self, key: K) -> None:
        """The client went away: the request leaves at once and frees its cache."""
        self.queued.pop(key, None)
        completion = self.requests.pop(key, None)
        self.choices_left.pop(key, None)
        self.clock.forget(key)
        for index in range(completion.n if completion is not None else 0):
            self.loop.cancel((key, index))

    @property
    def free_places(self) -> int:
        return self.max_sequences - len(self.loop.running) - len(self.loop.waiting)

    @property
    def busy(self) -> bool:
        return bool(self.requests)

    @property
    def keys(self) -> list[K]:
        return list(self.requests)

    def step(self) -> dict[K, list[Piece]]:
        """One decode step: the next piece of every choice of every decoding request (queued
        requests join first, in order, while their n sequences fit in max_sequences)."""
        while self.queued and self.queued[key := self.next_key()].n <= self.free_places:
            completion = self.queued.pop(key)
            if self.fault_prompt is not None and completion.prompt == self.fault_prompt:
                raise LoopDied(f"the test fault: prompt {self.fault_prompt!r} kills the loop")
            self.join(key, completion)
        pieces: dict[K, list[Piece]] = {}
        with self.metrics.timed("model"):
            events = self.loop.step()
        if events:
            self.metrics.batch(len(events))
        if self.loop.speculator is not None:
            proposed, accepted = self.loop.speculator.read_counts()
            self.metrics.add(DRAFT_TOKENS, proposed)
            self.metrics.add(ACCEPTED_TOKENS, accepted)
        if self.loop.prefixes is not None:
            lookups = self.loop.prefixes.read_lookups()
            self.metrics.add(PREFIX_CACHE_QUERIES, lookups.queries)
            self.metrics.add(PREFIX_CACHE_HITS, lookups.hits)
        now = time.perf_counter()
        for event in events:
            key, index = event.sequence.key
            if key not in self.requests:  # a sibling choice failed earlier in this step
                continue
            if event.token is not None and event.token != self.language.end_token:
                self.clock.token(key, index, now)
            piece = self.piece(event, self.requests[key], index)
            if piece.error is not None:  # its own failure, answered as ours (500)
                self.metrics.outcome(500, "model")
                self.cancel(key)
                pieces[key] = [piece]
                continue
            pieces.setdefault(key, []).append(piece)
            if piece.final:
                self.choices_left[key] -= 1
                if not self.choices_left[key]:
                    del self.requests[key], self.choices_left[key]
                    self.clock.ended(key, now)
        self.levels()
        return pieces

    def levels(self) -> None:
        """The gauges after a step: requests decoding and waiting, and the KV cache held."""
        self.metrics.set(REQUESTS_RUNNING, len(self.choices_left))
        self.metrics.set(REQUESTS_WAITING, len(self.queued))
        capacity = self.max_sequences * self.language.context_length
        self.metrics.set(KV_CACHE_USAGE, self.loop.kv_positions / capacity)

    def next_key(self) -> K:
        """The queued request to join next: the lowest priority value first (as vLLM's), in
        order of arrival among equals."""
        return min(self.queued, key=lambda k: self.queued[k].priority)

    def join(self, key: K, completion: Completion) -> None:
        """A request's n sequences join the loop, choice i seeded with seed + i."""
        self.choices_left[key] = completion.n
        for index in range(completion.n):
            sampling = completion.sampling
            if sampling.seed is not None and index:
                sampling = replace(sampling, seed=(sampling.seed + index) % (MAX_SEED + 1))
            self.loop.join((key, index), completion.prompt_ids, sampling)

    def piece(self, event: Event, completion: Completion, index: int) -> Piece:
        """What an event adds to its choice's answer: the new token (a request that streams),
        the whole choice when it ends (one that does not), else an empty piece."""
        sequence = event.sequence
        if sequence.error is not None:
            return Piece("", [], "error", sequence.error, index)
        end = self.language.end_token
        if completion.stream:
            token = [] if event.token in (None, end) else [event.token]
            scored = [event.logprobs] if event.logprobs is not None and token else []
            text = event.text
        elif event.finish_reason is not None:
            token = [t for t in sequence.tokens if t != end]
            scored = sequence.logprobs[: len(token)]  # the end token's is not shown
            text = sequence.text
        else:
            return Piece("", [], index=index)
        # the prompt's scores come with the choice's first piece
        first = bool(sequence.prompt_logprobs) and (
            not completion.stream or len(sequence.tokens) == 1
        )
        return Piece(
            text,
            token,
            event.finish_reason,
            index=index,
            logprobs=tuple(self.language.logprob(s) for s in scored),
            prompt_logprobs=self.prompt_scores(sequence) if first else (),
        )

    def prompt_scores(self, sequence: Sequence) -> tuple[Logprob, ...]:
        """The prompt's tokens scored; the first as text only (nothing came before it)."""
        first = Logprob(self.language.decode(sequence.prompt[:1]), None)
        return (first, *(self.language.logprob(s) for s in sequence.prompt_logprobs[1:] if s))


def speculator(language: LanguageModel) -> Speculator | None:
    """Speculative decoding with the language model's draft, when its plan names one."""
    draft = language.limits.draft
    if language.draft is None or draft is None:
        return None
    return Speculator(language.draft, draft.tokens, draft.max_batch)
