"""The decode loop with no runtime: a small GPT-2 and a small Llama built from a config (seeded
weights, spread wide enough that no two tokens tie), sequences joining and leaving between
steps; every greedy sequence gets exactly the tokens of Hugging Face's `generate()` on its
prompt alone."""

from __future__ import annotations

import pytest
import torch

from handlers.engines.generation import DecodeLoop, Sampling

LETTERS = "abcdefghijklmnopqrstuvwxyz .,"
END = 3


def spell(ids: list[int]) -> str:
    return "".join(LETTERS[i % len(LETTERS)] for i in ids)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    """GPT-2 and Llama (rotary positions, grouped key/value heads): the loop's cache handling
    must hold for both layouts."""
    return tiny_causal_lm(request.param)


def tiny_causal_lm(kind: str):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    common = {
        "vocab_size": 120,
        "initializer_range": 0.3,  # wide logits: greedy choices are never near a tie
        "bos_token_id": END,
        "eos_token_id": END,
    }
    if kind == "gpt2":
        config = GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4, **common)
        return GPT2LMHeadModel(config).eval()
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        **common,
    )
    return LlamaForCausalLM(config).eval()


def alone(model, prompt: list[int], new: int) -> list[int]:
    """generate()'s tokens without stopping at the end token (the loops here have none)."""
    config = model.generation_config
    config.eos_token_id = None
    out = model.generate(
        torch.tensor([prompt]),
        generation_config=config,
        max_new_tokens=new,
        do_sample=False,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


def run(loop: DecodeLoop, joins: dict[int, list]) -> dict:
    """Step until idle; `joins`: step number -> [(key, prompt, sampling)]. Returns each key's
    events."""
    events, step = {}, 0
    while loop.busy or step in joins or step < max(joins, default=0):
        for key, prompt, sampling in joins.get(step, []):
            loop.join(key, prompt, sampling)
        for event in loop.step():
            events.setdefault(event.sequence.key, []).append(event)
        step += 1
    return events


def test_sixteen_prompts_in_flight_get_the_tokens_of_generate_alone(model):
    torch.manual_seed(1)
    prompts = [torch.randint(4, 120, (length,)).tolist() for length in range(1, 17)]
    loop = DecodeLoop(model, spell, end_token=None)
    # four join every step: each decode step mixes caches of many lengths
    joins = {
        step: [
            (i, prompts[i], Sampling(max_tokens=6 + i % 5)) for i in range(step * 4, step * 4 + 4)
        ]
        for step in range(4)
    }
    events = run(loop, joins)
    for i, prompt in enumerate(prompts):
        got = [e.token for e in events[i]]
        assert got == alone(model, prompt, 6 + i % 5), f"prompt {i} of length {len(prompt)}"
        assert events[i][-1].finish_reason == "length"
        assert "".join(e.text for e in events[i]) == spell(got)


def test_a_seeded_request_samples_the_same_tokens_alone_and_beside_others(model):
    sampling = Sampling(max_tokens=12, temperature=0.9, top_k=20, top_p=0.9, seed=7)
    first = run(DecodeLoop(model, spell, None), {0: [("a", [5, 6, 7], sampling)]})["a"]
    crowd = [(k, [8 + k] * (k + 1), Sampling(max_tokens=9, temperature=1.0)) for k in range(5)]
    beside = run(DecodeLoop(model, spell, None), {0: crowd, 2: [("a", [5, 6, 7], sampling)]})["a"]
    assert [e.token for e in first] == [e.token for e in beside]
    other = run(
        DecodeLoop(model, spell, None),
        {0: [("a", [5, 6, 7], Sampling(**{**sampling.__dict__, "seed": 8}))]},
    )["a"]
    assert [e.token for e in other] != [e.token for e in first]


def test_the_end_token_and_stop_strings_end_a_sequence_and_its_streamed_text():
    class Scripted:
        """A model that always answers the next token of a script."""

        def __init__(self, script):
            self.script, self.calls = script, 0

        def __call__(self, input_ids, **kwargs):
            from transformers import DynamicCache

            rows, length = input_ids.shape
            logits = torch.zeros(rows, length, 120)
            logits[:, -1, self.script[min(self.calls, len(self.script) - 1)]] = 1.0
            self.calls += 1
            past = kwargs.get("cache")
            cached = past.layers[0].keys.shape[2] if past is not None else 0
            kv = torch.zeros(rows, 1, cached + length, 2)
            return type("Out", (), {"logits": logits, "cache": DynamicCache([(kv, kv)])})()

    ids = {c: LETTERS.index(c) for c in LETTERS}
    script = [ids[c] for c in "hi. yes"] + [END]
    ended = run(
        DecodeLoop(Scripted(script), spell, END), {0: [("k", [1], Sampling(max_tokens=50))]}
    )
    assert "".join(e.text for e in ended["k"]) == "hi. yes"
    assert ended["k"][-1].finish_reason == "stop" and ended["k"][-1].token == END
    stopped = run(
        DecodeLoop(Scripted(script), spell, END),
        {0: [("k", [1], Sampling(max_tokens=50, stop=(". y",)))]},
    )["k"]
    assert [e.text for e in stopped] == ["h", "i", "", "", ""]  # ". " held back, then dropped
    assert stopped[-1].finish_reason == "stop"


def test_a_cancelled_sequence_leaves_at_once_and_frees_its_cache(model):
    loop = DecodeLoop(model, spell, None)
    kept = loop.join("kept", [5, 6], Sampling(max_tokens=5))
    gone = loop.join("gone", [7, 8], Sampling(max_tokens=5))
    loop.step()
    loop.step()
    loop.cancel("gone")
    assert gone.finish_reason == "cancelled" and gone.cache is None
    assert loop.running == [kept]
    while loop.busy:
        loop.step()
    assert kept.tokens == alone(model, [5, 6], 5)


def test_sequences_of_far_apart_lengths_decode_in_groups_with_the_tokens_of_generate(model):
    """With max_padding 8, a long prompt joining short ones decodes in a group of its own (the
    short ones' batched cache stays as it was, never padded to its length), the groups merge
    again once it leaves, and every sequence still gets generate()'s tokens."""
    torch.manual_seed(2)
    short = [torch.randint(4, 120, (3 + i,)).tolist() for i in range(4)]
    long = torch.randint(4, 120, (40,)).tolist()
    loop = DecodeLoop(model, spell, end_token=None, max_padding=8)
    for i, prompt in enumerate(short):
        loop.join(i, prompt, Sampling(max_tokens=12))
    events: dict = {}

    def step() -> None:
        for event in loop.step():
            events.setdefault(event.sequence.key, []).append(event)

    step()
    step()  # the four decode in one group, its cache kept
    (group,) = loop.batches
    loop.join("long", long, Sampling(max_tokens=3))
    step()  # the long prompt prefilled
    step()
    assert [len(b.rows) for b in loop.batches] == [4, 1]
    assert loop.batches[0].cache is group.cache  # the short ones' cache was not re-padded
    assert loop.kv_positions < 4 * len(long)  # no short row holds the long one's length
    while loop.busy:
        step()
    for i, prompt in enumerate(short):
        assert [e.token for e in events[i]] == alone(model, prompt, 12), i
    assert [e.token for e in events["long"]] == alone(model, long, 3)


def test_with_no_padding_allowed_every_length_is_its_own_group_and_tokens_are_unchanged(model):
    torch.manual_seed(3)
    prompts = [torch.randint(4, 120, (length,)).tolist() for length in (2, 2, 5, 9)]
    loop = DecodeLoop(model, spell, end_token=None, max_padding=0)
    events = run(loop, {0: [(i, p, Sampling(max_tokens=5)) for i, p in enumerate(prompts)]})
    for i, prompt in enumerate(prompts):
        assert [e.token for e in events[i]] == alone(model, prompt, 5), i


def test_chunks_of_several_prompts_in_one_forward_give_each_its_own_cache_and_token(model):
    """Prompts going on from caches of different lengths (and one with none) prefill their next
    chunks together: each ends with the cache and first token it gets alone."""
    from handlers.engines.generation import Sequence

    torch.manual_seed(4)
    p1, p2, p3 = (torch.randint(4, 120, (n,)).tolist() for n in (12, 9, 6))
    loop = DecodeLoop(model, spell, end_token=None)
    s1, s2, s3 = (
        Sequence(k, p, Sampling(max_tokens=2)) for k, p in (("1", p1), ("2", p2), ("3", p3))
    )
    loop.prefill([(s1, 5)])
    loop.prefill([(s2, 2)])
    events = loop.prefill([(s1, 7), (s2, 3), (s3, 6)])
    assert [e.sequence.key for e in events] == ["1", "3"]  # "2" has 4 prompt tokens to go
    assert (s1.prefilled, s2.prefilled, s3.prefilled) == (12, 5, 6)
    events += loop.prefill([(s2, 4)])
    firsts = {e.sequence.key: e.token for e in events}
    assert firsts == {k: alone(model, p, 1)[0] for k, p in (("1", p1), ("2", p2), ("3", p3))}
    for sequence, prompt in ((s1, p1), (s2, p2), (s3, p3)):
        with torch.inference_mode():
            whole = model(input_ids=torch.tensor([prompt]), use_cache=True).cache
        for (keys, values), layer in zip(sequence.cache, whole.layers):
            assert keys.shape == layer.keys.shape
            assert torch.allclose(keys, layer.keys, atol=1e-5)
            assert torch.allclose(values, layer.values, atol=1e-5)
