"""How a generation request picks its tokens and when its text stops; runtime-neutral.

Greedy (temperature 0), or temperature, top-k and top-p with a generator per sequence seeded
from the request. Limits are the request reader's (handlers/engines/completions.py): here
every value is already one the sampler cannot overflow on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters could be the start of a stop string."""
    return max((longest_overlap(text, stop) for stop in stops), default=0)


def longest_overlap(text: str, stop: str) -> int:
    """The longest proper prefix of `stop` that `text` ends with, in time linear in the stop
    string's length: Knuth-Morris-Pratt's automaton over the last len(stop) - 1 characters."""
    fallback = prefix_function(stop)
    matched = 0
    for char in text[-(len(stop) - 1) :] if len(stop) > 1 else "":
        while matched and char != stop[matched]:
            matched = fallback[matched - 1]
        matched += char == stop[matched]
    return matched


def prefix_function(text: str) -> list[int]:
    """For each i, the length of the longest proper prefix of text[:i + 1] that ends it."""
    table = [0] * len(text)
    for i in range(1, len(text)):
        k = table[i - 1]
        while k and text[i] != text[k]:
            k = table[k - 1]
        table[i] = k + (text[i] == text[k])
    return table


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
