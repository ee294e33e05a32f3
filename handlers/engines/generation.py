"""The decode loop of a generative language model, with in-flight batching; runtime-neutral.

Sequences join between steps and leave when done. One `step()` prefills the sequences that
joined since the last step (in one forward, left-padded, each keeping only its own part of the
cache) and then decodes one token for every running sequence in batched forwards: the
caches, of different lengths, are left-padded to the longest with the padding masked out and
each sequence at its own position, so a sequence gets the tokens it would get alone (what
verification checks against eager `generate()`). Sequences of very different lengths decode in
separate groups (a forward each) when their padding would cost more than reading the weights
once more (`max_padding`): a 900-token prompt joining eight short streams does not pad all
eight to 900. Each group's batched cache is kept from step to step while the same sequences
decode in it, and only re-padded when one joins or leaves it.

The model is any causal LM with Hugging Face's forward (`input_ids`, `attention_mask`,
`position_ids`, `cache`, `use_cache`, `logits_to_keep`) returning `logits` and a `DynamicCache`.
Sampling (handlers/engines/sampling.py): logit bias and penalties, then greedy (temperature 0),
or temperature, top-k and top-p with a generator per sequence seeded from the request, so a
seeded request gives the same tokens whatever runs beside it. A sequence that asks for its
prompt's log-probabilities (echo) is prefilled alone, keeping every position's logits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch

from handlers.engines.kv_cache import KV, empty_like, kv_layers, left_padded, own_rows, own_span
from handlers.engines.prefix_cache import PrefixCache
from handlers.engines.scheduling import Pace, grouped
from handlers.engines.sampling import (
    Sampling,
    TokenLogprobs,
    adjusted,
    held_back,
    pick,
    token_logprobs,
)

if TYPE_CHECKING:
    from transformers import DynamicCache

    from handlers.engines.structured import Grammars, Matcher

log = logging.getLogger(__name__)


class CausalLMOutput(Protocol):
    """What the model's forward returns (transformers' CausalLMOutputWithPast), as used here."""

    logits: torch.Tensor  # [batch, positions kept, vocabulary]
    cache: DynamicCache


@dataclass
class Sequence:
    """One request's generation: its prompt, the tokens made so far and its cache."""

    key: Any  # the caller's handle for this request
    prompt: list[int]
    sampling: Sampling
    tokens: list[int] = field(default_factory=list[int])
    cache: KV | None = None  # its own cache from prefill until it decodes in the batch
    # "stop" (end token or stop string), "length", "cancelled", "error" (see `error`)
    finish_reason: str | None = None
    error: str | None = None  # why this sequence failed (its own failure, no one else's)
    generator: torch.Generator | None = None
    text: str = ""  # the generated text sent so far
    logprobs: list[TokenLogprobs] = field(default_factory=list[TokenLogprobs])  # per token made
    # the prompt's tokens' (the first has none: nothing comes before it), when asked for
    prompt_logprobs: list[TokenLogprobs | None] = field(default_factory=list[TokenLogprobs | None])
    matcher: Matcher | None = None  # where its text is in its grammar, when it has one
    prefilled: int = 0  # prompt tokens in its cache while its prompt is prefilled in chunks
    looked_up: bool = False  # its prompt was looked up in the prefix cache

    @property
    def length(self) -> int:
        """Tokens in the cache: the prompt and every generated token but the last."""
        return len(self.prompt) + max(len(self.tokens) - 1, 0)


@dataclass
class Batch:
    """Sequences that decoded together in the last step, and their batched cache."""

    rows: list[Sequence]
    cache: DynamicCache


@dataclass(frozen=True)
class Event:
    """One new token of one sequence: its id, the text it completes (possibly "" while a
    character's bytes are incomplete) and, on the last one, why the sequence ended."""

    sequence: Sequence
    token: int | None  # None: the sequence failed before it made one
    text: str
    finish_reason: str | None = None
    logprobs: TokenLogprobs | None = None  # when the request asked for them


class DecodeLoop:
    def __init__(
        self,
        model: Callable[..., CausalLMOutput],
        decode: Callable[[list[int]], str],
        end_token: int | None,
        grammars: Grammars | None = None,
        max_batched_tokens: int | None = None,
        prefixes: PrefixCache | None = None,
        max_padding: int | None = None,
        pace: Pace | None = None,
    ):
        self.model = model
        self.decode = decode  # token ids -> text
        self.end_token = end_token
        self.grammars = grammars  # matchers of constrained sequences (structured output)
        self.max_batched_tokens = max_batched_tokens  # a step's tokens: decoded + prefilled
        self.prefixes = prefixes  # prompts' KV by blocks, reused by later prompts
        # padded positions a group may hold before a sequence decodes in a group of its own
        # (None: every sequence in one group)
        self.max_padding = max_padding
        # prompt tokens a step may prefill while sequences decode (None: the budget alone)
        self.pace = pace
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.batches: list[Batch] = []  # the last step's groups

    def join(self, key: Any, prompt: list[int], sampling: Sampling) -> Sequence:
        sequence = Sequence(key, list(prompt), sampling)
        if not sampling.greedy:
            sequence.generator = torch.Generator()
            sequence.generator.manual_seed(
                sampling.seed if sampling.seed is not None else torch.seed()
            )
        self.waiting.append(sequence)
        return sequence

    def cancel(self, key: Any) -> None:
        """Stop a sequence (its client went away): it leaves at once and frees its cache."""
        for sequence in [*self.waiting, *self.running]:
            if sequence.key == key:
                sequence.finish_reason = "cancelled"
                sequence.cache = None
        self.waiting = [s for s in self.waiting if s.key != key]
        self.running = [s for s in self.running if s.key != key]
        if not self.running:
            self.batches = []

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def kv_positions(self) -> int:
        """Key/value positions held: the batched cache's rows by its length (padding
        included: it is memory), and the own caches of sequences not in it."""
        held = sum(len(batch.rows) * batch.cache.get_seq_length() for batch in self.batches)
        for sequence in [*self.running, *self.waiting]:
            if sequence.cache is not None:
                held += sequence.cache[0][0].shape[2]
        return held

    @torch.inference_mode()
    def step(self) -> list[Event]:
        """Decode one token for every running sequence and prefill the waiting ones within the
        step's token budget; one event per token."""
        whole, chunks = self.scheduled()
        started = time.perf_counter()
        scoring = [s for s in whole if s.sampling.prompt_logprobs is not None]
        plain = [(s, len(s.prompt)) for s in whole if s.sampling.prompt_logprobs is None]
        events = self.prefill(plain) if plain else []
        for sequence in scoring:  # alone: every position's logits of a batch would not fit
            events += self.prefill([(sequence, len(sequence.prompt))], every_position=True)
        # prompts going on from a cache, in a forward of their own: beside fresh prompts they
        # would pad those to their caches' length
        events += self.prefill(chunks) if chunks else []
        joined = [e.sequence for e in events]  # their prompts done (or failed)
        decoding, self.running = self.running, [*self.running, *joined]
        self.waiting = [s for s in self.waiting if not any(s is j for j in joined)]
        prefilled = time.perf_counter()
        if decoding:
            events += self.decode_groups(decoding)
        if self.pace is not None:
            tokens = sum(len(s.prompt) for s in whole) + sum(size for _, size in chunks)
            self.pace.prefilled(tokens, prefilled - started)
            if decoding:
                self.pace.decoded(time.perf_counter() - prefilled)
        self.running = [s for s in self.running if s.finish_reason is None]
        if not self.running:
            self.batches = []  # their memory goes with the last sequence
        return events

    def decode_groups(self, sequences: list[Sequence]) -> list[Event]:
        """One token for every sequence, a forward per group of similar lengths."""
        previous, self.batches = self.batches, []
        events: list[Event] = []
        last = [batch.rows for batch in previous]
        for group in grouped(sequences, last, self.max_padding):
            events += self.decode_isolated(group, previous)
        return events

    def scheduled(self) -> tuple[list[Sequence], list[tuple[Sequence, int]]]:
        """Who prefills this step, in order of arrival, within max_batched_tokens counting one
        token per running sequence: whole prompts that fit (batched together in one forward),
        and prompts that go on from a cache (a cached prefix, or their last chunk) or do not
        fit, each by its next chunk (chunked prefill: a long prompt joins over several steps,
        and the running sequences keep decoding meanwhile). While sequences decode, the chunks
        are also held to the pace (what takes a share of a decode step), so a long prompt
        joining costs each of their steps at most about that share more; short prompts that
        fit join whole, bounded by the budget alone. Those behind a prompt cut short wait."""
        left = (self.max_batched_tokens or 1 << 62) - len(self.running)
        paced = self.pace.tokens if self.running and self.pace is not None else 1 << 62
        whole: list[Sequence] = []
        chunks: list[tuple[Sequence, int]] = []
        for sequence in self.waiting:
            if left <= 0:
                break
            self.reuse_prefix(sequence)
            rest = len(sequence.prompt) - sequence.prefilled
            if not sequence.prefilled and (
                rest <= left or sequence.sampling.prompt_logprobs is not None
            ):
                whole.append(sequence)  # scored prompts are prefilled whole, alone
                left -= rest
                continue
            size = min(rest, left, paced)
            if size <= 0:
                break
            chunks.append((sequence, size))
            left, paced = left - rest, paced - size
            if size < rest:  # cut short: its next chunk comes next step, first
                break
        return whole, chunks

    def reuse_prefix(self, sequence: Sequence) -> None:
        """Before its first prefill, a sequence starts from the cached KV of its prompt's
        longest cached prefix (never one whose prompt is scored: that needs every logit)."""
        if self.prefixes is None or sequence.looked_up:
            return
        sequence.looked_up = True
        if sequence.sampling.prompt_logprobs is not None:
            return
        found = self.prefixes.longest(sequence.prompt)
        if found is not None:
            sequence.prefilled, sequence.cache = found

    def prefill(
        self, rows: list[tuple[Sequence, int]], every_position: bool = False
    ) -> list[Event]:
        """The next `size` prompt tokens of each sequence (its whole prompt, or a chunk on top
        of its cache) in one forward; each whose prompt is then done gives its first token. If
        the forward fails, each alone, so only its culprit fails."""
        try:
            logits = self.forward_prompts(rows, every_position)
        except Exception as exc:
            if len(rows) == 1:
                return [self.failed(rows[0][0], exc)]
            log.exception("prefill of %d sequences failed; each alone", len(rows))
            return [e for row in rows for e in self.prefill([row], every_position)]
        events: list[Event] = []
        for (sequence, _), last in zip(rows, logits):
            if sequence.prefilled < len(sequence.prompt):
                continue  # more chunks to come
            if self.prefixes is not None:
                self.prefixes.store(sequence.prompt, prefilled(sequence))
            events.append(self.advance(sequence, last))
        return events

    def forward_prompts(
        self, rows: list[tuple[Sequence, int]], every_position: bool = False
    ) -> torch.Tensor:
        """One forward over several sequences' next prompt tokens: each row is [padding][its
        cache][padding][its new tokens], the caches and the new tokens each left-padded to the
        longest, the padding masked out and every token at its own position, so each sequence
        keeps exactly its own cache with its new tokens' (padding dropped), and gets the
        logits of its last position (every position's, to score a whole prompt's tokens, as
        echo asks). Returns the last position's logits of each row."""
        from transformers import DynamicCache

        cached = [s.prefilled for s, _ in rows]
        longest_cache, longest_new = max(cached), max(size for _, size in rows)
        ids = torch.zeros(len(rows), longest_new, dtype=torch.long)
        mask = torch.zeros(len(rows), longest_cache + longest_new, dtype=torch.long)
        positions = torch.zeros(len(rows), longest_new, dtype=torch.long)
        for row, ((sequence, size), start) in enumerate(zip(rows, cached)):
            ids[row, longest_new - size :] = torch.tensor(sequence.prompt[start : start + size])
            mask[row, longest_cache - start : longest_cache] = 1
            mask[row, longest_cache + longest_new - size :] = 1
            positions[row, longest_new - size :] = torch.arange(start, start + size)
        past = None
        if longest_cache:
            like = next(prefilled(s) for s, _ in rows if s.prefilled)
            own = [s.cache if s.cache else empty_like(like) for s, _ in rows]
            past = DynamicCache(left_padded(own, longest_cache))
        out = self.model(  # the last position's logits only, as generate() asks for them
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=past,
            use_cache=True,
            logits_to_keep=0 if every_position else 1,
        )
        for row, ((sequence, size), start) in enumerate(zip(rows, cached)):
            scored = sequence.sampling.prompt_logprobs
            if every_position and scored is not None:
                new = out.logits[row, longest_new - size :]
                sequence.prompt_logprobs = prompt_logprobs(new, sequence.prompt, scored)
            sequence.cache = [
                (
                    own_span(layer.keys, row, longest_cache, start, size),
                    own_span(layer.values, row, longest_cache, start, size),
                )
                for layer in kv_layers(out.cache)
            ]
            sequence.prefilled = start + size
        return out.logits[:, -1]

    def decode_isolated(self, sequences: list[Sequence], previous: list[Batch]) -> list[Event]:
        """One token for each sequence together; if the forward fails, the batched cache is put
        back as it was and each sequence decodes alone from its own rows, so a failure is the
        failing sequence's own and the others get the tokens they would have got."""
        cache = self.batched_cache(sequences, previous)
        before = [(layer.keys, layer.values) for layer in kv_layers(cache)]
        try:
            logits = self.decode_step(sequences, cache)
        except Exception as exc:
            for layer, (keys, values) in zip(kv_layers(cache), before):
                # the forward appends in place
                layer.keys, layer.values = keys, values
            if len(sequences) == 1:
                return [self.failed(sequences[0], exc)]
            log.exception("decode step of %d sequences failed; each alone", len(sequences))
            for row, s in enumerate(sequences):
                s.cache = own_rows(cache, row, s.length)
            events: list[Event] = []
            for s in sequences:
                events += self.decode_isolated([s], [])
                if self.batches and self.batches[-1].rows[0] is s:  # it decoded: alone, its own
                    alone = self.batches.pop()
                    if s.finish_reason is None:
                        s.cache = own_rows(alone.cache, 0, s.length)
            return events
        return [self.advance(s, row) for s, row in zip(sequences, logits)]

    def failed(self, sequence: Sequence, exc: Exception) -> Event:
        """This sequence ends with its error; the loop and everyone else go on."""
        log.error("sequence %r failed: %s: %s", sequence.key, type(exc).__name__, exc)
        sequence.finish_reason, sequence.cache = "error", None
        sequence.error = f"generation failed: {type(exc).__name__}: {exc}"
        return Event(sequence, None, "", "error")

    def decode_step(self, sequences: list[Sequence], cache: DynamicCache) -> torch.Tensor:
        """One token for each sequence in one forward over the batched cache."""
        longest = cache.get_seq_length()
        mask = torch.zeros(len(sequences), longest + 1, dtype=torch.long)
        for row, s in enumerate(sequences):
            mask[row, longest - s.length :] = 1
        out = self.model(
            input_ids=torch.tensor([[s.tokens[-1]] for s in sequences]),
            attention_mask=mask,
            position_ids=torch.tensor([[s.length] for s in sequences]),
            cache=cache,
            use_cache=True,
        )
        self.batches.append(Batch(sequences, out.cache))
        return out.logits[:, -1]

    def batched_cache(self, sequences: list[Sequence], previous: list[Batch]) -> DynamicCache:
        """The last step's cache of these sequences if they decoded together as they are, else
        their own caches (a row of a last step's group, padding dropped, or a new one's
        prefill) left-padded to the longest: each row holds its sequence's positions at its
        right end."""
        from transformers import DynamicCache

        for batch in previous:
            rows = batch.rows
            if len(rows) == len(sequences) and all(a is b for a, b in zip(rows, sequences)):
                return batch.cache
        where = {id(s): (b.cache, row) for b in previous for row, s in enumerate(b.rows)}
        caches = [
            own_rows(*where[id(s)], s.length) if id(s) in where else prefilled(s) for s in sequences
        ]
        padded = left_padded(caches, max(s.length for s in sequences))
        for s in sequences:
            s.cache = None  # the batch holds it now
        return DynamicCache(padded)

    def advance(self, sequence: Sequence, logits: torch.Tensor) -> Event:
        """The next token of one sequence; a failure here (sampling, decoding) is its own."""
        try:
            return self.next_token(sequence, logits)
        except Exception as exc:
            return self.failed(sequence, exc)

    def next_token(self, sequence: Sequence, logits: torch.Tensor) -> Event:
        """Pick the next token, find the text it completes and whether the sequence ends."""
        sampling = sequence.sampling
        scores = adjusted(logits, sampling, sequence.prompt, sequence.tokens)
        matcher = self.matcher(sequence)
        if matcher is not None:  # only the tokens its grammar allows; other rows untouched
            scores = matcher.masked(scores)
        token = pick(scores, sampling, sequence.generator)
        if matcher is not None:
            matcher.accept(token)
        logprobs = None
        if sampling.logprobs is not None:
            logprobs = token_logprobs(logits, token, sampling.logprobs)
            sequence.logprobs.append(logprobs)
        sequence.tokens.append(token)
        stops = sequence.sampling.stop
        if token == self.end_token:
            sequence.finish_reason, text = "stop", self.decode(sequence.tokens[:-1])
        else:
            text = self.decode(sequence.tokens)
            # a stop string ending in the text already sent would have ended it: look after
            sent = len(sequence.text)
            found = [i for s in stops if (i := text.find(s, max(sent - len(s) + 1, 0))) >= 0]
            if found:
                sequence.finish_reason, text = "stop", text[: min(found)]
            elif matcher is not None and matcher.complete:  # nothing may follow
                sequence.finish_reason = "stop"
            elif len(sequence.tokens) >= sequence.sampling.max_tokens:
                sequence.finish_reason = "length"
            else:  # hold back what may still become a stop string or a whole character
                text = text[: len(text) - held_back(text, stops)].rstrip("\ufffd")
        new, sequence.text = text[len(sequence.text) :], text
        if sequence.finish_reason is not None:
            sequence.cache = None
        return Event(sequence, token, new, sequence.finish_reason, logprobs)

    def matcher(self, sequence: Sequence) -> Matcher | None:
        """The sequence's grammar matcher, made at its first token (a failure is its own)."""
        grammar = sequence.sampling.grammar
        if grammar is None or self.grammars is None:
            return None
        if sequence.matcher is None:
            sequence.matcher = self.grammars.matcher(grammar)
        return sequence.matcher


def prompt_logprobs(
    logits: torch.Tensor, prompt: list[int], top: int
) -> list[TokenLogprobs | None]:
    """Each prompt token's log-probability given the tokens before it (the logits at position
    i predict token i + 1); the first token has none."""
    return [None] + [token_logprobs(logits[i - 1], prompt[i], top) for i in range(1, len(prompt))]


def prefilled(sequence: Sequence) -> KV:
    """A sequence's own cache (from its prefill, or a row taken out of the batch)."""
    if sequence.cache is None:
        raise RuntimeError(f"sequence {sequence.key!r} has no cache to decode from")
    return sequence.cache
