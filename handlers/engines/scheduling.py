"""How the decode loop spends a step, from what things cost on this machine: which sequences
decode together, and how many prompt tokens it prefills beside them.

- **Groups of similar lengths.** A batched decode pads every row to the longest. A padded
  position's keys and values are copied (the cache grows by concatenation) and read by
  attention every step; another forward reads the weights once more. So sequences decode in one
  group while their padding costs less than a forward (`padding_worth_a_forward`), and a long
  prompt joining short streams decodes beside them in a group of its own.
- **Prefill paced by time.** While sequences decode, the chunks of prompts too long to join
  whole take only `batching.prefill_share` of a decode step (`Pace`, steered by what steps
  take), so a long prompt joining keeps the running streams' inter-token latency within about
  (1 + share) times its own; `batching.max_batched_tokens` stays the ceiling, and short
  prompts that fit it join whole (pacing them cost throughput at many streams). A
  chunk is a forward of its own, so part of its cost (reading the weights again, copying its
  cache so far) is paid whatever its size: on a CPU a long prompt then joins in small chunks,
  its first token much later than in one step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import torch

SMOOTHING = 0.2  # the weight of a new decode step's time in its running average
STEERING = 0.5  # how far one prefill's measurement moves the allowance
# the fewest prompt tokens a paced step prefills: a chunk's fixed cost is paid whatever its
# size, so below this a long prompt would take a step per few tokens for little gain
MIN_CHUNK = 16
MEASURED_PROMPT = 32  # tokens of the prompt timed at load


class Sized(Protocol):
    @property
    def length(self) -> int: ...


S = TypeVar("S", bound=Sized)


def fits(group: list[S], max_padding: int | None) -> bool:
    """Whether these sequences decode together: their padding to the longest is within
    max_padding positions (None: no limit)."""
    if max_padding is None:
        return True
    longest = max(s.length for s in group)
    return sum(longest - s.length for s in group) <= max_padding


def grouped(sequences: list[S], previous: list[list[S]], max_padding: int | None) -> list[list[S]]:
    """The sequences in groups: each keeps the group it decoded in last step (whose batched
    cache then stays as it is), a new one joins the first group it fits in or starts its own,
    and groups that fit together merge (lengths come closer as long sequences leave)."""
    decoding = {id(s) for s in sequences}
    groups = [[s for s in rows if id(s) in decoding] for rows in previous]
    groups = [group for group in groups if group]
    placed = {id(s) for group in groups for s in group}
    for sequence in sequences:
        if id(sequence) in placed:
            continue
        fitting = next((g for g in groups if fits([*g, sequence], max_padding)), None)
        if fitting is None:
            groups.append([sequence])
        else:
            fitting.append(sequence)
    groups.sort(key=lambda group: max(s.length for s in group))
    merged = groups[:1]
    for group in groups[1:]:
        if fits([*merged[-1], *group], max_padding):
            merged[-1] = [*merged[-1], *group]
        else:
            merged.append(group)
    return merged


def padding_worth_a_forward(weight_bytes: int, position_bytes: int) -> int:
    """The padded positions that cost a decode step about what another forward costs: a
    forward reads the weights once; a padded position's keys and values (`position_bytes`) are
    copied and read, about three passes, every step."""
    return weight_bytes // (3 * max(position_bytes, 1))


@dataclass
class Pace:
    """How many prompt tokens a step may prefill while sequences decode, steered by what steps
    take: a decode step's seconds (a running average) and, after each prefill, the size that
    would have taken `share` of a decode step. A prefill costs a fixed part (its own forward
    reads the weights again; a chunk's cache is copied) plus a part per token, so the size
    scaled by target / seconds always lands between the size tried and the right one: the
    allowance converges from either side without overshooting."""

    decode_s: float
    allowance: float  # prompt tokens per step
    # the share of a decode step a step's prefill may take (batching.prefill_share): below
    # one, the variance of both keeps a paced step within twice a decode step
    share: float = 0.8

    def decoded(self, seconds: float) -> None:
        self.decode_s += SMOOTHING * (seconds - self.decode_s)

    def prefilled(self, tokens: int, seconds: float) -> None:
        if tokens and seconds > 0:
            fitting = tokens * self.share * self.decode_s / seconds
            self.allowance += STEERING * (fitting - self.allowance)

    @property
    def tokens(self) -> int:
        """The prompt tokens a step may prefill now (at least MIN_CHUNK)."""
        return max(MIN_CHUNK, int(self.allowance))


def measured_pace(model: torch.nn.Module) -> Pace:
    """The first estimates, timed at load after a warm forward (each the best of three): a
    one-token forward for a decode step, and a MEASURED_PROMPT-token prefill steered once."""
    import torch

    def timed(tokens: int) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            model(input_ids=torch.zeros(1, tokens, dtype=torch.long))
            best = min(best, time.perf_counter() - started)
        return best

    with torch.inference_mode():
        pace = Pace(decode_s=timed(1), allowance=MEASURED_PROMPT)
        pace.prefilled(MEASURED_PROMPT, timed(MEASURED_PROMPT))
    return pace
