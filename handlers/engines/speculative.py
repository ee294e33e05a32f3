"""Speculative decoding (Leviathan et al. 2023, as vLLM, TGI and llama.cpp ship it), the draft's
side; runtime-neutral.

A small draft model with the target's tokenizer proposes a few tokens per sequence; the decode
loop (handlers/engines/generation.py) then runs the target once over the sequence's last token
and the proposals and keeps the target's own token at each position while it is the draft's:
greedy output is the target's token for token, and sampled tokens follow the rejection rule
(sampling.verified), so their distribution is the target's. A step then makes 1 to k + 1 tokens
per sequence for one target forward, which pays where a forward costs reading the weights (few
sequences); with more than `max_batch` sequences decoding, the loop decodes plainly.

Each sequence keeps its own draft cache, filled lazily (its prompt at its first proposal) and
cut back to the tokens kept after each verification. Its draft length follows its acceptance:
one more after a step that kept every proposal (up to `tokens`), else one more than it kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Callable, Protocol, TypeVar

import torch

from handlers.engines.kv_cache import KV, cropped, forward_rows
from handlers.engines.sampling import Sampling, adjusted, distribution, draw

log = logging.getLogger(__name__)
DRAFT_FOLDER = "draft"  # the draft's Hugging Face folder, inside the served one


@dataclass
class Drafting:
    """One sequence's draft: its cache (of the prompt and tokens it has seen) and how many
    tokens it proposes next."""

    length: int
    cache: KV | None = None

    @property
    def cached(self) -> int:
        return 0 if self.cache is None else self.cache[0][0].shape[2]


@dataclass
class Proposal:
    """A draft's tokens for one sequence, with the distribution each was drawn from (None:
    greedy, the draft's most likely token); filled one token per draft forward."""

    tokens: list[int] = field(default_factory=list[int])
    distributions: list[torch.Tensor | None] = field(default_factory=list[torch.Tensor | None])

    def at(self, position: int) -> tuple[int, torch.Tensor | None] | None:
        """The proposed token at a verified position, None past the last (the target's own)."""
        if position >= len(self.tokens):
            return None
        return self.tokens[position], self.distributions[position]


class Drafted(Protocol):
    """What the draft reads of a decoding sequence (generation.Sequence)."""

    prompt: list[int]
    tokens: list[int]
    sampling: Sampling
    generator: torch.Generator | None
    drafting: Drafting | None
    key: Any


D = TypeVar("D", bound=Drafted)


class Speculator:
    def __init__(self, model: Callable[..., Any], tokens: int = 4, max_batch: int = 4):
        self.model = model
        self.tokens = tokens  # the most a sequence proposes in one step
        self.max_batch = max_batch  # more sequences than this decode plainly
        self.proposed = 0  # since the last `read_counts`
        self.accepted = 0

    def chosen(self, sequences: list[D]) -> list[D]:
        """Those that speculate this step: all when few decode, never one held to a grammar
        (its draft would need the grammar's mask too). A seeded sampled sequence always does:
        its tokens then depend on its seed alone, never on how many decode beside it."""
        few = len(sequences) <= self.max_batch
        return [s for s in sequences if s.sampling.grammar is None and (few or seeded(s))]

    def propose(self, sequences: Sequence[Drafted]) -> list[Proposal]:
        """Each sequence's proposal, the draft forwards batched; a failing draft costs only the
        speculation (empty proposals: the step decodes plainly)."""
        try:
            return self.drafted(sequences)
        except Exception:
            log.exception("the draft failed; this step decodes without it")
            for sequence in sequences:
                sequence.drafting = None
            return [Proposal() for _ in sequences]

    def drafted(self, sequences: Sequence[Drafted]) -> list[Proposal]:
        proposals = [Proposal() for _ in sequences]
        for sequence in sequences:
            if sequence.drafting is None:
                sequence.drafting = Drafting(self.tokens)
        wanted = [self.wanted(s) for s in sequences]
        active = [i for i, n in enumerate(wanted) if n > 0]
        # first the tokens its cache lacks (its whole prompt at first), then one at a time
        feeds = {i: self.unseen(sequences[i]) for i in active}
        while active:
            rows = [(self.drafting(sequences[i]).cache, feeds[i]) for i in active]
            logits, caches = forward_rows(self.model, rows)
            for i, row, cache in zip(active, logits[:, -1], caches):
                sequence, proposal = sequences[i], proposals[i]
                self.drafting(sequence).cache = cache
                token, probabilities = self.pick(sequence, row, proposal.tokens)
                proposal.tokens.append(token)
                proposal.distributions.append(probabilities)
                feeds[i] = [token]
            active = [i for i in active if len(proposals[i].tokens) < wanted[i]]
        return proposals

    def wanted(self, sequence: Drafted) -> int:
        """Tokens to propose: its draft length, never past its max_tokens (the target's token
        after the proposals comes on top)."""
        left = sequence.sampling.max_tokens - len(sequence.tokens) - 1
        return max(min(self.drafting(sequence).length, left), 0)

    def unseen(self, sequence: Drafted) -> list[int]:
        return [*sequence.prompt, *sequence.tokens][self.drafting(sequence).cached :]

    @staticmethod
    def drafting(sequence: Drafted) -> Drafting:
        if sequence.drafting is None:
            raise RuntimeError(f"sequence {sequence.key!r} has no draft state")
        return sequence.drafting

    @staticmethod
    def pick(
        sequence: Drafted, logits: torch.Tensor, proposed: list[int]
    ) -> tuple[int, torch.Tensor | None]:
        """The draft's token, picked as the target would pick (same penalties, temperature,
        top-k and top-p), with the distribution it was drawn from."""
        sampling = sequence.sampling
        scores = adjusted(logits, sampling, sequence.prompt, [*sequence.tokens, *proposed])
        if sampling.greedy:
            return int(torch.argmax(scores)), None
        probabilities = distribution(scores, sampling)
        return draw(probabilities, sequence.generator), probabilities

    def settle(self, sequence: Drafted, proposal: Proposal, made: list[int]) -> None:
        """After verification (`made`: the sequence's tokens this step): its draft cache cut to
        the tokens it holds that were kept, and its draft length adapted."""
        kept = 0
        while kept < min(len(made), len(proposal.tokens)) and made[kept] == proposal.tokens[kept]:
            kept += 1
        self.proposed += len(proposal.tokens)
        self.accepted += kept
        drafting = sequence.drafting
        if drafting is None or not proposal.tokens:
            return
        if drafting.cache is not None:
            # it holds the tokens before this step and all proposals but the last
            before = len(sequence.prompt) + len(sequence.tokens) - len(made)
            drafting.cache = cropped(drafting.cache, before + min(kept, len(proposal.tokens) - 1))
        if kept == len(proposal.tokens):
            drafting.length = min(drafting.length + 1, self.tokens)
        else:
            drafting.length = max(kept + 1, 1)

    def read_counts(self) -> tuple[int, int]:
        """Draft tokens proposed and accepted since the last call (for the metrics)."""
        counts = self.proposed, self.accepted
        self.proposed = self.accepted = 0
        return counts


def seeded(sequence: Drafted) -> bool:
    return not sequence.sampling.greedy and sequence.sampling.seed is not None
