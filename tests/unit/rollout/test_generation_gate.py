"""The generation gate's arithmetic with fake endpoints: token agreement position by position
over the longer answer, TTFT and tokens/s compared best round to best round, failed streams
refusing; the new
rollout fields left out of the records when unset."""

from __future__ import annotations

import pytest

from scripts.rollout import generation_gate as gate
from scripts.rollout.gate import Gate
from scripts.spec.versions import RolloutGate


def answering(tokens: dict[str, list[int]]):
    return lambda body: {"status": 200, "token_ids": tokens[body["prompt"]], "first_piece_s": 0.01}


def test_token_agreement_counts_equal_positions_over_the_longer_answer():
    serving = answering({"a": [1, 2, 3, 4], "b": [5, 6]})
    candidate = answering({"a": [1, 2, 9, 4], "b": [5, 6, 7, 8]})
    # a: 3 of 4 equal; b: 2 of 4 (the candidate's extra tokens count as different)
    assert gate.token_agreement(serving, candidate, ["a", "b"], 4) == pytest.approx(5 / 8)


class FakeSpec:
    def __init__(self, **rollout):
        self.rollout = RolloutGate(load_seconds=0.06, load_clients=2, **rollout)


def streams(first_piece_s: float, status: int = 200, tokens: int = 1):
    def call(body):
        return {"status": status, "token_ids": [1] * tokens, "first_piece_s": first_piece_s}

    return lambda: {"x-stream": call}


def test_a_candidate_much_slower_to_its_first_token_is_refused():
    checked = Gate()
    gate.load_check(streams(0.01), streams(0.05), FakeSpec(max_ttft_factor=2.0), {}, checked)
    assert checked.figures["ttft_p50_ms"] == pytest.approx({"serving": 10.0, "candidate": 50.0})
    assert "time to first token 50.0 ms vs the serving version's 10.0 ms" in checked.problems[0]
    passing = Gate()
    gate.load_check(streams(0.01), streams(0.015), FakeSpec(), {}, passing)
    assert passing.passed


def test_tokens_per_second_are_gated_only_where_the_spec_asks():
    # a candidate whose streams carry no tokens: its rate is 0 however many streams it answers
    serving, candidate = streams(0.01, tokens=4), streams(0.01, tokens=0)
    measured = Gate()
    gate.load_check(serving, candidate, FakeSpec(), {}, measured)
    rate = measured.figures["tokens_per_s"]
    assert measured.passed and rate["candidate"] == 0 and rate["serving"] > 0
    gated = Gate()
    gate.load_check(serving, candidate, FakeSpec(min_throughput_factor=0.9), {}, gated)
    assert "0 tokens/s vs the serving version's" in gated.problems[0]
    assert "(rollout.min_throughput_factor 0.9)" in gated.problems[0]


def test_failed_streams_refuse_the_candidate():
    checked = Gate()
    gate.load_check(streams(0.01), streams(0.01, status=500), FakeSpec(), {}, checked)
    assert checked.problems and "streams failed under load" in checked.problems[0]


def test_the_generation_thresholds_are_recorded_only_when_set():
    assert "min_token_agreement" not in RolloutGate().model_dump()
    assert RolloutGate().token_agreement == 0.8 and RolloutGate().ttft_factor == 2.0
    assert RolloutGate(min_token_agreement=0.5).model_dump()["min_token_agreement"] == 0.5
