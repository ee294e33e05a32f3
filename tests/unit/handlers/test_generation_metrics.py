"""A generation model's own metrics, as vLLM's: time to first token, inter-token latency and
end-to-end histograms, prompt and generation token counters, requests running and waiting and
the KV cache held (gauges); recorded by the decode loop and
published through the same catalogue (and so the same series on both runtimes)."""

from __future__ import annotations

from handlers.engines.completions import LanguageModel
from handlers.engines.generating import Generating
from handlers.metrics import (
    E2E_REQUEST_LATENCY,
    GENERATION_TOKENS,
    INTER_TOKEN_LATENCY,
    KV_CACHE_USAGE,
    PROMPT_TOKENS,
    REQUESTS_RUNNING,
    REQUESTS_WAITING,
    TIME_TO_FIRST_TOKEN,
    ModelMetrics,
)
from tests.unit.handlers.conftest import LIMITS, drain


class Recorded:
    def __init__(self):
        self.values: dict[tuple[str, tuple[str, ...]], float] = {}

    def record(self, metric, value, labels):
        key = (metric.name, labels)
        self.values[key] = self.values.get(key, 0) + value

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.values.items() if n == name)


def test_latencies_and_token_counts_of_every_request(folder):
    language = LanguageModel(folder, LIMITS, max_choices=4)
    recorded = Recorded()
    metrics = ModelMetrics("tiny", 1)
    metrics.sink = recorded  # published by flush() only: no thread
    generating = Generating(language, max_sequences=4, metrics=metrics)
    bodies = {
        "a": {"prompt": "the film", "max_tokens": 5, "stream": True},
        "b": {"prompt": "the", "max_tokens": 3},
        "c": {"prompt": "the food was", "max_tokens": 4, "n": 2, "temperature": 1.0, "seed": 1},
    }
    for key, body in bodies.items():
        generating.admit(key, body)
    pieces = drain(generating)
    metrics.flush()
    made = sum(len(p.token_ids) for key in ("a", "b", "c") for p in pieces[key])
    prompts = sum(len(language.encode(b["prompt"])) for b in bodies.values())
    sequences = 4  # c has two choices
    assert recorded.total(PROMPT_TOKENS.name) == prompts
    assert recorded.total(GENERATION_TOKENS.name) == made
    assert recorded.total(TIME_TO_FIRST_TOKEN.count.name) == 3  # one per request
    assert recorded.total(E2E_REQUEST_LATENCY.count.name) == 3
    # every token but each sequence's first follows another of its sequence
    assert recorded.total(INTER_TOKEN_LATENCY.count.name) == made - sequences
    assert recorded.total(TIME_TO_FIRST_TOKEN.sum.name) > 0
    assert not generating.clock.admitted_at and not generating.clock.last_token


class Levels:
    """A sink that keeps each gauge's values in the order they were published."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def record(self, metric, value, labels):
        if metric.kind == "gauge":
            self.values.setdefault(metric.name, []).append(value)


def test_gauges_say_how_many_decode_wait_and_how_much_cache_is_held(folder):
    language = LanguageModel(folder, LIMITS)
    levels, metrics = Levels(), ModelMetrics("tiny", 1)
    metrics.sink = levels
    generating = Generating(language, max_sequences=2, metrics=metrics)
    for key in "abc":  # two decode, the third waits for a place
        generating.admit(key, {"prompt": "the film was", "max_tokens": 6})
    generating.step()
    metrics.flush()
    assert levels.values[REQUESTS_RUNNING.name] == [2]
    assert levels.values[REQUESTS_WAITING.name] == [1]
    held = levels.values[KV_CACHE_USAGE.name][0]
    prompt = len(language.encode("the film was"))
    # the two prompts' positions of 2 x the context (nothing in the batch before its first step)
    assert held == 2 * prompt / (2 * language.context_length)
    drain(generating)
    metrics.flush()
    assert [levels.values[m.name][-1] for m in (REQUESTS_RUNNING, REQUESTS_WAITING)] == [0, 0]
    assert levels.values[KV_CACHE_USAGE.name][-1] == 0  # the cache goes with the last sequence
