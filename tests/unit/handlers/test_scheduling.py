"""The decode loop's scheduler on the tiny GPT-2 of conftest.py: a step runs at most
max_batched_tokens tokens (one per running sequence plus prompt tokens), a longer prompt is
prefilled in chunks over several steps while the running sequences keep decoding, and the
tokens are the ones an unchunked loop gives; requests join by priority."""

from __future__ import annotations

import pytest

from handlers.engines.batching import Failure
from handlers.engines.generating import Generating
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
