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

from handlers.engines.kv_cache import KV, cropped, forward_rows, kv_layers, left_padded, own_rows
from handlers.engines.prefix_cache import PrefixCache
from handlers.engines.scheduling import Pace, grouped
from handlers.engines.sampling import (
    Sampling,
    TokenLogprobs,
    adjusted,
    distribution,
    held_back,
    pick,
    token_logprobs,
    verified,
)
from handlers.engines.speculative import Drafting, Proposal, Speculator

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
    drafting: Drafting | None = None  # its draft's cache, when it decodes speculatively

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
        speculator: Speculator | None = None,
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
        self.speculator = speculator  # a draft model's proposals, verified by this model
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
                sequence.cache, sequence.drafting = None, None
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
        speculating = self.speculator.chosen(sequences) if self.speculator else []
        events = self.decode_speculative(speculating, previous) if speculating else []
        plain = [s for s in sequences if not any(s is t for t in speculating)]
        last = [batch.rows for batch in previous]
        for group in grouped(plain, last, self.max_padding):
            events += self.decode_isolated(group, previous)
        return events

    def decode_speculative(self, sequences: list[Sequence], previous: list[Batch]) -> list[Event]:
        """The draft's proposals for these sequences, verified by one forward of this model
        over each one's last token and proposals (handlers/engines/speculative.py); each
        decodes from its own cache, kept to the tokens it keeps."""
        for sequence in sequences:
            sequence.cache = own_cache(sequence, previous)
        assert self.speculator is not None
        return self.verify_isolated(sequences, self.speculator.propose(sequences))

    def verify_isolated(self, sequences: list[Sequence], proposals: list[Proposal]) -> list[Event]:
        """One forward verifying every sequence's proposal; if it fails, each alone, so a
        failure is the failing sequence's own (the caches are untouched: the forward builds
        new ones)."""
        rows = [(prefilled(s), [s.tokens[-1], *p.tokens]) for s, p in zip(sequences, proposals)]
        try:
            logits, caches = forward_rows(self.model, rows, keep=max(len(r) for _, r in rows))
        except Exception as exc:
            if len(sequences) == 1:
                return [self.failed(sequences[0], exc)]
            log.exception("verifying %d sequences failed; each alone", len(sequences))
            pairs = zip(sequences, proposals)
            return [e for s, p in pairs for e in self.verify_isolated([s], [p])]
        events: list[Event] = []
        for sequence, proposal, row, cache in zip(sequences, proposals, logits, caches):
            events += self.verified(sequence, proposal, row[-(len(proposal.tokens) + 1) :], cache)
        return events

    def verified(
        self, sequence: Sequence, proposal: Proposal, logits: torch.Tensor, cache: KV
    ) -> list[Event]:
        """This model's token at each verified position, for as long as it is the draft's
        (greedy: its own choice; sampled: the rejection rule), and one more: the correction
        or, when all were kept, the token after them."""
        events: list[Event] = []
        for position, row in enumerate(logits):
            drafted = proposal.at(position)
            event = self.advance(sequence, row, drafted)
            events.append(event)
            if sequence.finish_reason is not None or drafted is None or event.token != drafted[0]:
                break
        made = [e.token for e in events if e.token is not None]
        assert self.speculator is not None
        self.speculator.settle(sequence, proposal, made)
        if sequence.finish_reason is None:
            sequence.cache = cropped(cache, sequence.length)
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
        """One forward over several sequences' next prompt tokens (kv_cache.forward_rows): each
        keeps exactly its own cache with its new tokens', and gets the logits of its last
        position (every position's, to score a whole prompt's tokens, as echo asks). Returns
        the last position's logits of each row."""
        starts = [s.prefilled for s, _ in rows]
        logits, caches = forward_rows(
            self.model,
            [
                (s.cache if start else None, s.prompt[start : start + size])
                for (s, size), start in zip(rows, starts)
            ],
            keep=0 if every_position else 1,  # the last position's only, as generate() asks
        )
        for (sequence, size), start, cache, row in zip(rows, starts, caches, logits):
            scored = sequence.sampling.prompt_logprobs
            if every_position and scored is not None:
                sequence.prompt_logprobs = prompt_logprobs(row[-size:], sequence.prompt, scored)
            sequence.cache, sequence.prefilled = cache, start + size
        return logits[:, -1]

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
        caches = [own_cache(s, previous) for s in sequences]
        padded = left_padded(caches, max(s.length for s in sequences))
        for s in sequences:
            s.cache = None  # the batch holds it now
        return DynamicCache(padded)

    def advance(
        self,
        sequence: Sequence,
        logits: torch.Tensor,
        drafted: tuple[int, torch.Tensor | None] | None = None,
    ) -> Event:
        """The next token of one sequence; a failure here (sampling, decoding) is its own."""
        try:
            return self.next_token(sequence, logits, drafted)
        except Exception as exc:
            return self.failed(sequence, exc)

    def next_token(
        self,
        sequence: Sequence,
        logits: torch.Tensor,
        drafted: tuple[int, torch.Tensor | None] | None = None,
    ) -> Event:
        """Pick the next token (given a draft's token and its distribution, by the rejection
        rule when sampling), find the text it completes and whether the sequence ends."""
        sampling = sequence.sampling
        scores = adjusted(logits, sampling, sequence.prompt, sequence.tokens)
        matcher = self.matcher(sequence)
        if matcher is not None:  # only the tokens its grammar allows; other rows untouched
            scores = matcher.masked(scores)
        proposed = None if drafted is None else drafted[1]
        if drafted is not None and proposed is not None:  # sampled: the rejection rule
            token = verified(
                distribution(scores, sampling), drafted[0], proposed, sequence.generator
            )
        else:
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
            sequence.cache, sequence.drafting = None, None
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


def own_cache(sequence: Sequence, previous: list[Batch]) -> KV:
    """A sequence's own cache: its row of a last step's group (padding dropped), or the one it
    holds (its prefill's, or its own after a speculative step)."""
    for batch in previous:
        for row, s in enumerate(batch.rows):
            if s is sequence:
                return own_rows(batch.cache, row, s.length)
    return prefilled(sequence)


def prefilled(sequence: Sequence) -> KV:
    """A sequence's own cache (from its prefill, or a row taken out of the batch)."""
    if sequence.cache is None:
        raise RuntimeError(f"sequence {sequence.key!r} has no cache to decode from")
    return sequence.cache
