"""Hostile generation requests, with no runtime: every one is a 4xx naming its field and its
limit before any token is made, and leaves nothing behind; a failure while decoding is the
failing sequence's own; beyond max_waiting a request is refused at once; a dead loop ends the
worker. The same bodies on real servers: tests/integration/test_generation_hardening.py."""

# ruff: noqa: E501 (the table of hostile bodies reads best one per line)
from __future__ import annotations

import json

import pytest
import torch

from handlers.engines.batching import Failure
from handlers.engines.completions import MAX_SEED, MIN_TEMPERATURE
from handlers.engines.generating import FAULT_PROMPT_ENV, Generating
from handlers.preprocessing.processing import RequestError
from tests.unit.handlers.conftest import drain, step

HOSTILE = [  # (name, body, what the 400 says)
    ("temperature NaN", '{"prompt": "the", "temperature": NaN}', "temperature: Input should be a finite number"),
    ("temperature Infinity", '{"prompt": "the", "temperature": Infinity}', "temperature: Input should be a finite"),
    ("temperature -Infinity", '{"prompt": "the", "temperature": -Infinity}', "temperature: Input should be a finite"),
    ("temperature 1e-40", {"prompt": "the", "temperature": 1e-40}, f"or {MIN_TEMPERATURE} and more"),
    ("temperature denormal", {"prompt": "the", "temperature": 5e-324}, f"or {MIN_TEMPERATURE} and more"),
    ("temperature 1e400", '{"prompt": "the", "temperature": 1e400}', "temperature: Input should be a finite"),
    ("seed 2**64", {"prompt": "the", "seed": 2**64}, f"seed: {2**64} is outside 0..{MAX_SEED}"),
    ("seed -1", {"prompt": "the", "seed": -1}, "seed: -1 is outside"),
    ("seed 1e300", {"prompt": "the", "seed": 1e300}, "seed: "),
    ("max_tokens Infinity", '{"prompt": "the", "max_tokens": Infinity}', "max_tokens: expected a whole number, got inf"),
    ("max_tokens NaN", '{"prompt": "the", "max_tokens": NaN}', "max_tokens: expected a whole number, got nan"),
    ("max_tokens 1e30", {"prompt": "the", "max_tokens": 1e30}, "max_tokens: 1000000000000000019884624838656 is outside 1..16"),
    ("max_tokens true", {"prompt": "the", "max_tokens": True}, "max_tokens: Input should be a valid integer"),
    ("top_k huge", {"prompt": "the", "top_k": 10**12}, "top_k: 1000000000000 is outside 0 (every token)..296"),
    ("top_p NaN", '{"prompt": "the", "top_p": NaN}', "top_p: Input should be a finite number"),
    ("lone surrogate prompt", '{"prompt": "the \\ud800"}', "prompt: not valid Unicode (a lone surrogate at character 4)"),
    ("lone surrogate stop", '{"prompt": "the", "stop": "\\udfff"}', "stop: "),
    ("300 KB stop string", {"prompt": "the", "stop": "x" * 300_000}, "stop[0]: 300000 characters is outside 1..256"),
    ("many stop strings", {"prompt": "the", "stop": ["a"] * 1000}, "stop: 1000 strings is over this model's limit of 4"),
    ("4 MB prompt", {"prompt": "the " * 1_000_000}, "prompt: 4000000 bytes is over this model's limit of 1024"),
    ("megabyte model name", {"prompt": "the", "model": "m" * 1_000_000}, "model: String should have at most 256"),
    ("deep JSON", '{"prompt": "the", "stop": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ("prompt a number", {"prompt": 7}, "prompt: Input should be a valid string, got 7"),
    ("stream a string", {"prompt": "the", "stream": "yes"}, "stream: Input should be a valid boolean"),
    ("unknown field", {"prompt": "the", "x" * 10_000: 1}, "unknown field(s) ['xxxx"),
]  # fmt: skip


@pytest.mark.parametrize("name, body, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_request_is_a_400_naming_its_field(language, monkeypatch, name, body, message):
    """Refused before the prompt is tokenized: a big one costs no tokenizer time."""
    monkeypatch.setattr(language, "encode", lambda text: pytest.fail("tokenized first"))
    with pytest.raises(RequestError) as error:
        language.read(body)
    assert message in str(error.value)
    assert len(str(error.value)) < 500  # the message names the value, never echoes it whole


def test_a_refused_request_leaves_nothing_behind(language):
    generating = Generating(language, max_sequences=2)
    for _, body, _ in HOSTILE:
        assert isinstance(generating.admit(object(), body), Failure)
    assert not generating.busy and not generating.queued and not generating.requests


def test_refused_openai_requests_keep_no_state_in_the_handler(handler):
    service, context = handler
    context.url_paths = {0: "v1/completions", 1: "v1/chat/completions"}
    big = {"prompt": "the", "model": "m" * 3_000_000, "logprobs": 1}
    chat = {"messages": [{"role": "user", "content": "x" * 3_000_000}], "model": "tiny"}
    for _ in range(3):
        answers = step(service, context, {"a": json.dumps(big), "b": json.dumps(chat)})
        assert [context.statuses[i] for i in (0, 1)] == [400, 400]
        assert all(stop is None for _, stop in answers)
    adapter = service.engine.generating
    assert adapter.writers == {} and not adapter.generating.requests
    assert "model: String should have at most 256" in answers[0][0] or "logprobs" in answers[0][0]
    assert "max_prompt_bytes" in answers[1][0]


def test_beyond_max_waiting_a_request_is_refused_at_once(language):
    generating = Generating(language, max_sequences=1, max_waiting=2)
    admitted = [generating.admit(key, {"prompt": "the", "max_tokens": 2}) for key in range(5)]
    refused = [a for a in admitted if isinstance(a, Failure)]
    assert [f.status for f in refused] == [429, 429] and refused[0].reason == "overload"
    assert "batching.max_waiting" in refused[0].message
    assert sorted(drain(generating)) == [0, 1, 2]  # every admitted one completes


def alone(language, prompt: str, max_tokens: int = 6) -> list[int]:
    generating = Generating(language, max_sequences=1)
    generating.admit("alone", {"prompt": prompt, "max_tokens": max_tokens})
    return drain(generating)["alone"][-1].token_ids


PROMPTS = ["the film", "the battery lasts", "the food was very good"]


def test_a_sequence_that_fails_to_sample_fails_alone(language, monkeypatch):
    """A sampling failure (as NaN probabilities once were) ends its sequence with its error;
    the sequences decoding beside it get the tokens they get alone."""
    import handlers.engines.generation

    expected = {p: alone(language, p) for p in PROMPTS}
    real_pick = handlers.engines.generation.pick

    def pick(logits, sampling, generator):
        if sampling.seed == 13:
            raise RuntimeError("probability tensor contains either inf, nan or element < 0")
        return real_pick(logits, sampling, generator)

    monkeypatch.setattr(handlers.engines.generation, "pick", pick)
    generating = Generating(language, max_sequences=4)
    for prompt in PROMPTS:
        generating.admit(prompt, {"prompt": prompt, "max_tokens": 6})
    generating.admit("bad", {"prompt": "the", "temperature": 1.0, "seed": 13})
    pieces = drain(generating)
    assert pieces["bad"][-1].finish_reason == "error" and "nan" in pieces["bad"][-1].error
    assert {p: pieces[p][-1].token_ids for p in PROMPTS} == expected


class Failing(torch.nn.Module):
    """The model, raising whenever a row decodes at `position` (one sequence's, by length)."""

    def __init__(self, model, position: int):
        super().__init__()
        self.model, self.position, self.failures = model, position, 0

    def forward(self, **inputs):
        if (inputs["position_ids"][:, -1] == self.position).any():
            self.failures += 1
            raise RuntimeError(f"the forward failed at position {self.position}")
        return self.model(**inputs)


@pytest.mark.parametrize("fail_at", ["prefill", "decode"])
def test_a_forward_that_fails_for_one_sequence_fails_only_it(language, fail_at):
    """The batched forward fails: the cache is put back, each sequence runs alone, and only
    the culprit gets the error; the others' tokens are what they get alone."""
    expected = {p: alone(language, p) for p in PROMPTS}
    bad_prompt = "the battery lasts all day. this film is great. the food"
    bad_length = len(language.encode(bad_prompt))
    # a position only the bad sequence reaches: past every other prompt and its 6 tokens
    assert bad_length - 1 > max(len(language.encode(p)) + 6 for p in PROMPTS)
    generating = Generating(language, max_sequences=4)
    position = bad_length - 1 if fail_at == "prefill" else bad_length + 1
    generating.loop.model = Failing(language.model, position)
    for prompt in PROMPTS:
        generating.admit(prompt, {"prompt": prompt, "max_tokens": 6})
    generating.admit("bad", {"prompt": bad_prompt, "max_tokens": 6})
    pieces = drain(generating)
    assert pieces["bad"][-1].finish_reason == "error"
    assert "the forward failed" in pieces["bad"][-1].error
    assert {p: pieces[p][-1].token_ids for p in PROMPTS} == expected
    assert generating.loop.model.failures >= 2  # together, then alone


def test_a_dead_loop_ends_the_torchserve_worker(handler, monkeypatch):
    """Beyond any one request (here the test fault): the worker exits, TorchServe restarts it."""
    service, context = handler

    def exit_(code):
        raise SystemExit(code)

    monkeypatch.setattr("os._exit", exit_)
    service.engine.generating.generating.fault_prompt = "kill the loop"
    with pytest.raises(SystemExit) as exited:
        step(service, context, {"k": json.dumps({"prompt": "kill the loop"})})
    assert exited.value.code == 1


def test_the_fault_hook_is_off_unless_its_variable_is_set(language, monkeypatch):
    monkeypatch.delenv(FAULT_PROMPT_ENV, raising=False)
    assert Generating(language, max_sequences=1).fault_prompt is None
    monkeypatch.setenv(FAULT_PROMPT_ENV, "boom")
    assert Generating(language, max_sequences=1).fault_prompt == "boom"
