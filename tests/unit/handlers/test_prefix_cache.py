"""Automatic prefix caching on the tiny GPT-2 of conftest.py: a prompt that starts like an
earlier one prefills only its rest, the tokens are the ones without the cache, hits are
counted by tokens, and the cache stays within its byte budget."""

from __future__ import annotations

from handlers.engines.generating import Generating
from handlers.engines.prefix_cache import PrefixCache, size_of
from handlers.metrics import PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES
from tests.unit.handlers.conftest import drain
from tests.unit.handlers.test_scheduling import Counting

SHARED = "the battery lasts all day. this film is great."


def generate(language, prompts: list[str], cache: PrefixCache | None, counting=None) -> list:
    """The prompts one after another (each finds what the earlier ones left)."""
    generating = Generating(language, max_sequences=4, max_batched_tokens=64)
    generating.loop.prefixes = cache
    if counting is not None:
        generating.loop.model = counting
    answers = []
    for prompt in prompts:
        generating.admit("r", {"prompt": prompt, "max_tokens": 4})
        answers.append(drain(generating)["r"][-1].token_ids)
    counted = generating.metrics.sums.counters  # no sink: the sums stay
    return answers, {
        m.name: counted.get((m, ()), 0) for m in (PREFIX_CACHE_QUERIES, PREFIX_CACHE_HITS)
    }


def test_a_shared_prefix_is_prefilled_once_and_the_tokens_do_not_change(language):
    prompts = [SHARED + " the food", SHARED + " the film", SHARED + " the food"]
    cache = PrefixCache(1 << 20, block_tokens=4)
    counting = Counting(language.model)
    cached, counted = generate(language, prompts, cache, counting)
    assert cached == generate(language, prompts, None)[0]
    lengths = [len(language.encode(p)) for p in prompts]
    reused = [(n - 1) // 4 * 4 for n in lengths]  # whole blocks, one token left to prefill
    prefills = [size for size in counting.sizes if size > 1]  # decode steps run 1 token
    assert prefills[0] == lengths[0]  # nothing cached yet
    assert prefills[1:] == [n - r for n, r in zip(lengths[1:], reused[1:])]
    assert counted[PREFIX_CACHE_QUERIES.name] == sum(lengths)
    assert counted[PREFIX_CACHE_HITS.name] == sum(reused[1:])


def test_the_cache_stays_within_its_budget_least_recently_used_out(language):
    one_block = PrefixCache(1 << 30, block_tokens=4)
    generate(language, [SHARED], one_block)
    block_bytes = size_of(next(iter(one_block.blocks.values())))
    small = PrefixCache(3 * block_bytes, block_tokens=4)
    generate(language, [SHARED, "the food was very good. the battery"], small)
    assert small.bytes <= 3 * block_bytes and len(small.blocks) == 3
    assert small.longest(language.encode(SHARED)) is None  # its blocks went first
