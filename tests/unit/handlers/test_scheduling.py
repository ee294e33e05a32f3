"""The decode loop's scheduler on the tiny GPT-2 of conftest.py: a step runs at most
max_batched_tokens tokens (one per running sequence plus prompt tokens), a longer prompt is
prefilled in chunks over several steps while the running sequences keep decoding, and the
tokens are the ones an unchunked loop gives; requests join by priority; while sequences
decode, the prompt tokens of a step follow the pace (steered to a share of a decode step)."""

from __future__ import annotations

import pytest

from handlers.engines.batching import Failure
from handlers.engines.generating import Generating
from handlers.engines.scheduling import MIN_CHUNK, Pace
from tests.unit.handlers.conftest import drain

LONG = "the battery lasts all day. this film is great. the food"


class Counting:
    """The model, counting the tokens each forward runs."""

    def __init__(self, model):
        self.model, self.sizes = model, []

    def __call__(self, **kwargs):
        self.sizes.append(int(kwargs["input_ids"].numel()))
        return self.model(**kwargs)


def tokens(language, bodies: dict, budget: int | None, counting: Counting | None = None) -> dict:
    generating = Generating(language, max_sequences=4, max_batched_tokens=budget)
    if counting is not None:
        generating.loop.model = counting
    for key, body in bodies.items():
        assert not isinstance(generating.admit(key, body), Failure)
    return {key: pieces[-1].token_ids for key, pieces in drain(generating).items()}


@pytest.mark.parametrize("budget", [2, 3, 5])
def test_chunked_prefill_gives_the_tokens_of_a_whole_prefill(language, budget):
    bodies = {
        "long": {"prompt": LONG, "max_tokens": 6},
        "short": {"prompt": "the", "max_tokens": 6},
        "food": {"prompt": "the food was", "max_tokens": 6},
    }
    assert len(language.encode(LONG)) > 2 * budget  # chunked over several steps
    assert tokens(language, bodies, budget) == tokens(language, bodies, None)


def test_no_step_runs_more_than_the_budget_and_running_sequences_keep_decoding(language):
    budget = 4
    counting = Counting(language.model)
    generating = Generating(language, max_sequences=4, max_batched_tokens=budget)
    generating.loop.model = counting
    generating.admit("running", {"prompt": "the", "max_tokens": 16})
    generating.step()  # its prefill
    generating.admit("long", {"prompt": LONG, "max_tokens": 2})
    prompt = len(language.encode(LONG))
    steps_while_long_waits = 0
    while "long" not in generating.step():
        steps_while_long_waits += 1
        assert generating.loop.running[0].key == ("running", 0)  # decoded a token this step
    # each step: the running sequence's token, and budget - 1 prompt tokens of the long one
    assert steps_while_long_waits == -(-prompt // (budget - 1)) - 1
    decode_and_chunks = counting.sizes[1:]
    assert all(size <= budget - 1 or size == 1 for size in decode_and_chunks)


def test_lower_priority_values_join_first(language):
    generating = Generating(language, max_sequences=1)
    for key, priority in (("late", 5), ("urgent", -1), ("normal", 0), ("normal2", 0)):
        generating.admit(key, {"prompt": "the", "max_tokens": 1, "priority": priority})
    order = [key for _ in range(4) for key in generating.step()]
    assert order == ["urgent", "normal", "normal2", "late"]


@pytest.mark.parametrize("start", [1.0, 500.0])
def test_the_pace_converges_on_the_chunk_that_takes_its_share_of_a_decode_step(start):
    """A prefill costs a fixed part plus a part per token: steered by what each prefill took,
    the allowance reaches the size whose prefill takes `share` of a decode step, from below or
    above, without passing it."""
    fixed, per_token, decode = 0.030, 0.001, 0.070
    pace = Pace(decode_s=decode, allowance=start, share=0.8)
    right = (0.8 * decode - fixed) / per_token  # 26 tokens
    seen = []
    for _ in range(30):
        size = pace.tokens
        pace.prefilled(size, fixed + per_token * size)
        seen.append(pace.allowance)
    assert pace.tokens == pytest.approx(right, abs=2.5)  # sizes are whole tokens
    if start < right:
        assert all(a <= right + 1e-9 for a in seen)
    else:
        assert all(a >= right - 1e-9 for a in seen)


def test_a_fixed_cost_above_the_share_still_prefills_min_chunk_tokens_a_step():
    pace = Pace(decode_s=0.050, allowance=64, share=0.8)
    for _ in range(20):
        pace.prefilled(pace.tokens, 0.060 + 0.001 * pace.tokens)  # 60 ms before any token
    assert pace.tokens == MIN_CHUNK


class Fixed(Pace):
    """A pace that stays where it is put (timings on a shared machine vary), below MIN_CHUNK
    to fit the tiny model's 32-token context."""

    def prefilled(self, tokens: int, seconds: float) -> None:
        pass

    @property
    def tokens(self) -> int:
        return int(self.allowance)


def test_while_sequences_decode_a_step_prefills_no_more_than_the_pace(language):
    """A prompt too long for the step's budget joins a decoding sequence in chunks of at most
    the pace's tokens (below the budget's), and both get the tokens an unpaced loop gives
    them."""
    long, allowance = LONG, 3
    assert len(language.encode(long)) > 3 * allowance
    bodies = {
        "running": {"prompt": "the", "max_tokens": 12},
        "long": {"prompt": long, "max_tokens": 4},
    }
    counting = Counting(language.model)
    paced = Generating(language, max_sequences=4, max_batched_tokens=8)
    paced.loop.model, paced.loop.pace = counting, Fixed(decode_s=1.0, allowance=allowance)
    paced.admit("running", bodies["running"])
    made = {"running": paced.step()["running"]}
    paced.admit("long", bodies["long"])
    while "long" not in made:
        for key, pieces in paced.step().items():
            made.setdefault(key, []).extend(pieces)
        assert len(paced.loop.running) >= 1  # the running one decodes meanwhile
    for key, pieces in drain(paced).items():
        made[key].extend(pieces)
    chunks = [size for size in counting.sizes[1:] if size > 1]
    assert len(chunks) >= 3 and max(chunks) <= allowance
    unpaced = tokens(language, bodies, None)
    assert {key: pieces[-1].token_ids for key, pieces in made.items()} == unpaced


def test_short_prompts_that_fit_the_budget_join_whole_whatever_the_pace(language):
    """The pace holds long prompts' chunks; prompts that fit the budget join in one forward."""
    generating = Generating(language, max_sequences=4, max_batched_tokens=64)
    generating.loop.pace = Fixed(decode_s=1.0, allowance=1)
    generating.admit("running", {"prompt": "the", "max_tokens": 8})
    generating.step()
    for key in ("a", "b", "c"):
        generating.admit(key, {"prompt": "the food was", "max_tokens": 8})
    pieces = generating.step()
    assert {"a", "b", "c"} <= set(pieces)  # each made its first token this step
