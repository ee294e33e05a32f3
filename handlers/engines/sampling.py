"""How a generation request picks its tokens and when its text stops; runtime-neutral.

The logits are adjusted as vLLM does, in its order: `logit_bias` added, then the repetition
penalty over the prompt's and the output's tokens, then the frequency and presence penalties
over the output's. Then greedy (temperature 0), or temperature, top-k and top-p with a
generator per sequence seeded from the request. Log-probabilities are the model's own
(log-softmax of the raw logits, vLLM's default `raw_logprobs`). Limits are the request
reader's (handlers/engines/completions.py): here every value is already one the sampler cannot
overflow on.
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
    presence_penalty: float = 0.0  # subtracted once from each token the output has
    frequency_penalty: float = 0.0  # subtracted per time the output has the token
    repetition_penalty: float = 1.0  # divides (>0) or multiplies (<0) seen tokens' logits
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    logprobs: int | None = None  # each new token's log-probability and this many top ones
    prompt_logprobs: int | None = None  # the same for the prompt's tokens (echo)
    grammar: str | None = None  # llguidance's grammar the text must follow (structured.py)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def adjusts(self) -> bool:
        """Whether the logits change before a token is picked."""
        return bool(
            self.logit_bias
            or self.presence_penalty
            or self.frequency_penalty
            or self.repetition_penalty != 1.0
        )


@dataclass(frozen=True)
class TokenLogprobs:
    """A token's log-probability and the most likely tokens' at its position, best first."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()
    rank: int = 1  # 1 + the tokens more likely than it (vLLM's rank)


def adjusted(
    logits: torch.Tensor, sampling: Sampling, prompt: list[int], output: list[int]
) -> torch.Tensor:
    """The logits after logit_bias and the penalties (vLLM's formulas and order)."""
    if not sampling.adjusts:
        return logits
    scores = logits.float().clone()
    for token, bias in sampling.logit_bias:
        scores[token] += bias
    if sampling.repetition_penalty != 1.0:
        seen = torch.tensor(sorted({*prompt, *output}), dtype=torch.long)
        values = scores[seen]
        penalty = sampling.repetition_penalty
        scores[seen] = torch.where(values > 0, values / penalty, values * penalty)
    if output and (sampling.frequency_penalty or sampling.presence_penalty):
        counts = torch.bincount(torch.tensor(output), minlength=scores.numel())[: scores.numel()]
        scores -= sampling.frequency_penalty * counts + sampling.presence_penalty * (counts > 0)
    return scores


def token_logprobs(logits: torch.Tensor, token: int, top: int) -> TokenLogprobs:
    """`token`'s log-probability under the raw logits, and the `top` most likely tokens'."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    best = torch.topk(logprobs, min(top, logprobs.numel()))
    tokens: list[int] = best.indices.tolist()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  torch: untyped
    values: list[float] = best.values.tolist()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    rank = int((logprobs > logprobs[token]).sum()) + 1
    return TokenLogprobs(token, float(logprobs[token]), tuple(zip(tokens, values)), rank)


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
    """Greedy: the most likely token. Else one draw from `distribution`."""
    if sampling.greedy:
        return int(torch.argmax(logits))
    return draw(distribution(logits, sampling), generator)


def distribution(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """What a sampled token is drawn from: softmax(logits / temperature) restricted to the
    top-k tokens and to the smallest set whose probability reaches top-p."""
    scores = logits.float() / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(scores, min(sampling.top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        outside = cumulative - torch.softmax(ordered, dim=-1) >= sampling.top_p
        scores[order[outside]] = float("-inf")
    return torch.softmax(scores, dim=-1)


def draw(probabilities: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probabilities, 1, generator=generator))


def verified(
    target: torch.Tensor, drafted: int, proposed: torch.Tensor, generator: torch.Generator | None
) -> int:
    """Speculative sampling's rule (Leviathan et al. 2023): the draft's token is kept with
    probability min(1, p/q), else a token is drawn from the target's excess over the draft,
    max(0, p - q) normalised, so what is kept is distributed exactly as the target's `p`."""
    p, q = target[drafted], proposed[drafted]
    if float(torch.rand((), generator=generator)) * float(q) < float(p):
        return drafted
    excess = torch.clamp(target - proposed, min=0)
    return draw(excess if float(excess.sum()) > 0 else target, generator)
