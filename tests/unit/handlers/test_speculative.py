"""Speculative decoding in the decode loop, with no runtime: a draft made of the target's first
layer proposes, the target verifies. Greedy sequences get exactly the tokens of the target's
`generate()` alone, whatever the draft proposes and whatever decodes beside them; sampled ones
follow the target's distribution (a chi-square test against the exact one, which the draft's
own distribution fails)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from handlers.engines.generation import DecodeLoop, Sampling
from handlers.engines.speculative import Speculator
from tests.unit.handlers.test_generation import alone, run, spell, tiny_causal_lm


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    return tiny_causal_lm(request.param)


PROMPT = [5, 6, 7, 8]


def first_layer_of(target):
    """A draft: the target with only its first block (a distilled student's shape, untrained):
    it agrees with the target on some tokens, not all."""
    draft = copy.deepcopy(target)
    blocks = draft.transformer.h if hasattr(draft, "transformer") else draft.model.layers
    del blocks[1:]
    draft.config.num_hidden_layers = draft.config.n_layer = 1
    return draft.eval()


def test_greedy_sequences_get_the_targets_tokens_alone_whatever_the_draft_proposes(model):
    torch.manual_seed(1)
    prompts = [torch.randint(4, 120, (length,)).tolist() for length in range(1, 13)]
    speculator = Speculator(first_layer_of(model), tokens=4, max_batch=4)
    loop = DecodeLoop(model, spell, None, speculator=speculator)
    # three join every step: the loop goes from speculating (<= 4 decoding) to plain
    # batches and back as they come and leave, handing caches over both ways
    joins = {
        step: [
            (i, prompts[i], Sampling(max_tokens=5 + 2 * (i % 4)))
            for i in range(step * 3, step * 3 + 3)
        ]
        for step in range(4)
    }
    events = run(loop, joins)
    for i, prompt in enumerate(prompts):
        got = [e.token for e in events[i]]
        assert got == alone(model, prompt, 5 + 2 * (i % 4)), f"prompt {i}"
        assert "".join(e.text for e in events[i]) == spell(got)
    proposed, accepted = speculator.read_counts()
    assert proposed > 0 and 0 < accepted < proposed  # a partial draft: some kept, some not


def test_a_perfect_draft_makes_several_tokens_per_step_and_every_proposal_is_kept(model):
    speculator = Speculator(copy.deepcopy(model), tokens=3, max_batch=4)
    loop = DecodeLoop(model, spell, None, speculator=speculator)
    loop.join("a", PROMPT, Sampling(max_tokens=13))
    per_step = []
    while loop.busy:
        per_step.append(len(loop.step()))
    assert sum(per_step) == 13
    assert per_step[0] == 1 and max(per_step[1:]) == 4  # the prefill's token, then 1 + 3 drafted
    assert len(per_step) <= 1 + math.ceil(12 / 4) + 1
    proposed, accepted = speculator.read_counts()
    assert proposed == accepted > 0


def test_a_failing_draft_costs_only_the_speculation(model):
    class Broken(torch.nn.Module):
        def forward(self, **_):
            raise RuntimeError("draft out of memory")

    loop = DecodeLoop(model, spell, None, speculator=Speculator(Broken(), tokens=4))
    events = run(loop, {0: [("a", PROMPT, Sampling(max_tokens=8))]})
    assert [e.token for e in events["a"]] == alone(model, PROMPT, 8)


def test_grammar_sequences_and_crowds_decode_plainly_but_seeded_sampling_always_speculates(model):
    speculator = Speculator(copy.deepcopy(model), tokens=4, max_batch=2)

    def sequence(**sampling):
        return type("S", (), {"sampling": Sampling(**sampling)})()

    crowd = [sequence() for _ in range(3)]
    assert speculator.chosen(crowd) == []
    assert speculator.chosen(crowd[:2]) == crowd[:2]
    seeded = sequence(temperature=1.0, seed=3)
    assert speculator.chosen([*crowd, seeded]) == [seeded]  # its tokens: its seed's alone
    assert speculator.chosen([sequence(grammar='{"type": "object"}')]) == []


def test_a_seeded_sampled_request_gets_the_same_tokens_alone_and_in_a_crowd(model):
    sampling = Sampling(max_tokens=12, temperature=0.9, top_k=20, seed=7)

    def tokens(crowd: int) -> list[int]:
        speculator = Speculator(first_layer_of(model), tokens=3, max_batch=2)
        loop = DecodeLoop(model, spell, None, speculator=speculator)
        others = [(k, [9 + k] * 3, Sampling(max_tokens=10)) for k in range(crowd)]
        return [e.token for e in run(loop, {0: [*others, ("a", PROMPT, sampling)]})["a"]]

    assert tokens(0) == tokens(6)


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """The chi-square quantile at 1 - 0.001 (z = 3.09), by Wilson and Hilferty's cube-root
    approximation (within 1% for df >= 3)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(counts: dict, expected: dict, total: int) -> tuple[float, int]:
    """Pearson's statistic over the cells expected 5 times or more (the rest pooled)."""
    big = [cell for cell, p in expected.items() if p * total >= 5]
    pooled_p = 1 - sum(expected[c] for c in big)
    pooled_n = total - sum(counts.get(c, 0) for c in big)
    statistic = sum(
        (counts.get(c, 0) - expected[c] * total) ** 2 / (expected[c] * total) for c in big
    )
    if pooled_p * total >= 5:
        statistic += (pooled_n - pooled_p * total) ** 2 / (pooled_p * total)
        return statistic, len(big)
    return statistic, len(big) - 1


def exact_pairs(model, sampling: Sampling) -> dict:
    """P(first two tokens) after PROMPT under a model's sampling distribution."""
    from handlers.engines.sampling import distribution

    with torch.inference_mode():
        first = distribution(model(input_ids=torch.tensor([PROMPT])).logits[0, -1], sampling)
        pairs = {}
        for a in torch.nonzero(first).flatten().tolist():
            second = distribution(
                model(input_ids=torch.tensor([[*PROMPT, a]])).logits[0, -1], sampling
            )
            for b in torch.nonzero(second).flatten().tolist():
                pairs[(a, b)] = float(first[a] * second[b])
    return pairs


def test_sampled_tokens_follow_the_targets_distribution_not_the_drafts(model):
    sampling = Sampling(max_tokens=3, temperature=1.5, top_k=5)
    draft = first_layer_of(model)
    speculator = Speculator(draft, tokens=2, max_batch=10_000)
    loop = DecodeLoop(model, spell, None, speculator=speculator)
    total = 3000
    for seed in range(total):
        loop.join(seed, PROMPT, Sampling(**{**sampling.__dict__, "seed": seed}))
    tokens: dict = {}
    while loop.busy:
        for event in loop.step():
            tokens.setdefault(event.sequence.key, []).append(event.token)
    counts: dict = {}
    for made in tokens.values():
        counts[tuple(made[:2])] = counts.get(tuple(made[:2]), 0) + 1
    proposed, accepted = speculator.read_counts()
    assert 0 < accepted < proposed  # the rule both kept and replaced proposals

    statistic, df = chi_square(counts, exact_pairs(model, sampling), total)
    assert statistic < chi_square_critical(df), (statistic, df)
    # the test has the power to tell: the draft's own distribution is far outside it
    against_draft, df = chi_square(counts, exact_pairs(draft, sampling), total)
    assert against_draft > 3 * chi_square_critical(df), (against_draft, df)


@pytest.mark.parametrize("penalty", [1.3])
def test_penalties_apply_to_drafted_positions_as_to_plain_ones(model, penalty):
    sampling = Sampling(max_tokens=10, repetition_penalty=penalty, frequency_penalty=0.5)
    plain = run(DecodeLoop(model, spell, None), {0: [("a", PROMPT, sampling)]})["a"]
    speculator = Speculator(first_layer_of(model), tokens=4)
    drafted = run(
        DecodeLoop(model, spell, None, speculator=speculator), {0: [("a", PROMPT, sampling)]}
    )["a"]
    assert [e.token for e in drafted] == [e.token for e in plain]
