"""The decode loop of a generative language model, with in-flight batching; runtime-neutral.

Sequences join between steps and leave when done. One `step()` prefills the sequences that
joined since the last step (in one forward, left-padded, each keeping only its own part of the
cache) and then decodes one token for every running sequence in one batched forward: the
caches, of different lengths, are left-padded to the longest with the padding masked out and
each sequence at its own position, so a sequence gets the tokens it would get alone (what
verification checks against eager `generate()`). The batched cache is kept from step to step
while the same sequences decode, and only re-padded when one joins or leaves.

The model is any causal LM with Hugging Face's forward (`input_ids`, `attention_mask`,
`position_ids`, `cache`, `use_cache`, `logits_to_keep`) returning `logits` and a `DynamicCache`.
Sampling: greedy (temperature 0), or temperature, top-k and top-p with a generator per sequence
seeded from the request, so a seeded request gives the same tokens whatever runs beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [1, heads, length, dim]


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens and when it stops (limits are checked by the caller)."""

    max_tokens: int = 16
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: every token
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Sequence:
    """One request's generation: its prompt, the tokens made so far and its cache."""

    key: Any  # the caller's handle for this request
    prompt: list[int]
    sampling: Sampling
    tokens: list[int] = field(default_factory=list)
    cache: KV | None = None  # its own cache from prefill until it decodes in the batch
    finish_reason: str | None = None  # "stop" (end token or stop string), "length", "cancelled"
    generator: torch.Generator | None = None
    text: str = ""  # the generated text sent so far

    @property
    def length(self) -> int:
        """Tokens in the cache: the prompt and every generated token but the last."""
        return len(self.prompt) + max(len(self.tokens) - 1, 0)


@dataclass(frozen=True)
class Event:
    """One new token of one sequence: its id, the text it completes (possibly "" while a
    character's bytes are incomplete) and, on the last one, why the sequence ended."""

    sequence: Sequence
    token: int
    text: str
    finish_reason: str | None = None


class DecodeLoop:
    def __init__(self, model, decode: Callable[[list[int]], str], end_token: int | None):
        self.model = model
        self.decode = decode  # token ids -> text
        self.end_token = end_token
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.batch: tuple[list[Sequence], Any] | None = None  # last decode's rows and cache

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
            self.batch = None

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    @torch.inference_mode()
    def step(self) -> list[Event]:
        """Prefill whoever joined, decode one token for everyone else; one event per token."""
        events = self.prefill(self.waiting) if self.waiting else []
        decoding, self.running = self.running, [*self.running, *self.waiting]
        self.waiting = []
        if decoding:
            logits = self.decode_step(decoding)
            events += [self.advance(s, row) for s, row in zip(decoding, logits)]
        self.running = [s for s in self.running if s.finish_reason is None]
        if not self.running:
            self.batch = None  # its memory goes with the last sequence
        return events

    def prefill(self, sequences: list[Sequence]) -> list[Event]:
        """The prompts of the sequences that joined, in one forward: left-padded to the longest,
        the padding masked out and each prompt at positions 0.., so each keeps exactly its own
        cache (padding dropped) and its last position's logits."""
        longest = max(len(s.prompt) for s in sequences)
        ids = torch.zeros(len(sequences), longest, dtype=torch.long)
        mask = torch.zeros(len(sequences), longest, dtype=torch.long)
        for row, s in enumerate(sequences):
            ids[row, longest - len(s.prompt) :] = torch.tensor(s.prompt)
            mask[row, longest - len(s.prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(  # logits of the last position only, as generate() asks for them
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        events = []
        for row, s in enumerate(sequences):
            keep = len(s.prompt)
            s.cache = [
                (layer.keys[row : row + 1, :, -keep:], layer.values[row : row + 1, :, -keep:])
                for layer in out.cache.layers
            ]
            events.append(self.advance(s, out.logits[row, -1]))
        return events

    def decode_step(self, sequences: list[Sequence]) -> torch.Tensor:
        """One token for each sequence in one forward over the batched cache."""
        cache = self.batched_cache(sequences)
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
        self.batch = (sequences, out.cache)
        return out.logits[:, -1]

    def batched_cache(self, sequences: list[Sequence]):
        """The last step's cache if the same sequences decode again, else their own caches
        (a row of the last batch, padding dropped, or a new one's prefill) left-padded to the
        longest: each row holds its sequence's positions at its right end."""
        from transformers import DynamicCache

        rows, batch = self.batch or ([], None)
        if len(rows) == len(sequences) and all(a is b for a, b in zip(rows, sequences)):
            return batch
        where = {id(s): row for row, s in enumerate(rows)}

        def own(s: Sequence) -> KV:
            if id(s) not in where:
                return s.cache
            row, keep = where[id(s)], s.length
            return [
                (layer.keys[row : row + 1, :, -keep:], layer.values[row : row + 1, :, -keep:])
                for layer in batch.layers
            ]

        caches = [own(s) for s in sequences]
        longest = max(s.length for s in sequences)
        padded = [
            tuple(torch.cat([pad_left(c[layer][part], longest) for c in caches]) for part in (0, 1))
            for layer in range(len(caches[0]))
        ]
        for s in sequences:
            s.cache = None  # the batch holds it now
        return DynamicCache(padded)

    def advance(self, sequence: Sequence, logits: torch.Tensor) -> Event:
        """Pick the next token, find the text it completes and whether the sequence ends."""
        token = pick(logits, sequence.sampling, sequence.generator)
        sequence.tokens.append(token)
        stops = sequence.sampling.stop
        if token == self.end_token:
            sequence.finish_reason, text = "stop", self.decode(sequence.tokens[:-1])
        else:
            text = self.decode(sequence.tokens)
            found = [text.index(s) for s in stops if s in text]
            if found:
                sequence.finish_reason, text = "stop", text[: min(found)]
            elif len(sequence.tokens) >= sequence.sampling.max_tokens:
                sequence.finish_reason = "length"
            else:  # hold back what may still become a stop string or a whole character
                text = text[: len(text) - held_back(text, stops)].rstrip("\ufffd")
        new, sequence.text = text[len(sequence.text) :], text
        if sequence.finish_reason is not None:
            sequence.cache = None
        return Event(sequence, token, new, sequence.finish_reason)


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters could be the start of a stop string."""
    return max(
        (n for stop in stops for n in range(1, len(stop)) if text.endswith(stop[:n])), default=0
    )


def pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """[1, heads, n, dim] -> [1, heads, length, dim] with zeros before (masked out)."""
    missing = length - tensor.shape[2]
    if missing == 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, 0, missing, 0))


def pick(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """Greedy: the most likely token. Else softmax(logits / temperature) restricted to the
    top-k tokens and to the smallest set whose probability reaches top-p, then one draw."""
    if sampling.greedy:
        return int(torch.argmax(logits))
    scores = logits.float() / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(scores, min(sampling.top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        outside = cumulative - torch.softmax(ordered, dim=-1) >= sampling.top_p
        scores[order[outside]] = float("-inf")
    return int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator))
