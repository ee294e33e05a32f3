"""Triton's vLLM tensor contract: the backend's optional outputs (`return_logprobs`,
`return_cumulative_logprob`, `return_num_input_tokens`, `return_num_output_tokens`) as its
model.py shapes them, checked against eager log-softmax on the tiny GPT-2 of conftest.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handlers.engines.batching import Failure
from handlers.engines.generating import Generating
from handlers.protocols import GENERATION_PROTOCOLS, ModelFacts
from tests.unit.handlers.conftest import drain
from tests.unit.handlers.test_openai_fields import PROMPT, eager_logprobs

RETURNS = ("logprobs", "cumulative_logprob", "num_input_tokens", "num_output_tokens")


def answers(language, sampling: dict, stream: bool, returns=RETURNS) -> list[dict]:
    """What the Triton model sends for one request: each response's output arrays."""
    body = {
        "text_input": np.array([PROMPT.encode()], dtype=np.object_),
        "stream": np.array([stream]),
        "sampling_parameters": np.array([json.dumps(sampling).encode()], dtype=np.object_),
        **{f"return_{name}": np.array([True]) for name in returns},
    }
    fields, writer = GENERATION_PROTOCOLS["generate"].read(body, ModelFacts(None, 4096))
    generating = Generating(language, max_sequences=2)
    admitted = generating.admit("r", fields)
    assert not isinstance(admitted, Failure), admitted
    writer.admitted(admitted)
    sent = [writer.piece(piece) for piece in drain(generating)["r"]]
    return [s for s in sent if s is not None]


@pytest.mark.parametrize("stream", [True, False])
def test_logprobs_and_token_counts_as_vllms_backend_sends_them(language, stream):
    responses = answers(language, {"max_tokens": 6, "logprobs": 3}, stream)
    prompt = language.encode(PROMPT)
    tokens = [int(t) for r in responses for t in r["token_ids"]]
    expected = eager_logprobs(language, prompt + tokens)
    scored = [token for r in responses for token in json.loads(r["logprobs"][0])]
    assert len(scored) == len(tokens) > 0
    total = 0.0
    for i, (token, entry) in enumerate(zip(tokens, scored)):
        row = expected[len(prompt) - 1 + i]
        chosen = entry[str(token)]
        assert chosen["logprob"] == pytest.approx(float(row[token]), abs=1e-4)
        assert chosen["rank"] == int((row > row[token]).sum()) + 1
        assert chosen["decoded_token"] == language.decode([token])
        best = row.topk(3).indices.tolist()
        assert {str(t) for t in best} <= set(entry)  # the top 3, beside the chosen one
        assert [entry[str(t)]["rank"] for t in best] == [1, 2, 3]
        total += float(row[token])
    assert float(responses[-1]["cumulative_logprob"][0]) == pytest.approx(total, abs=1e-3)
    assert all(int(r["num_input_tokens"][0]) == len(prompt) for r in responses)
    assert [int(r["num_output_tokens"][0]) for r in responses] == [
        len(r["token_ids"]) for r in responses
    ]


def test_logprobs_not_asked_for_in_sampling_parameters_are_null_and_the_sum_still_given(language):
    responses = answers(language, {"max_tokens": 4}, stream=False)
    (last,) = responses
    assert last["logprobs"][0] == b"null"  # as vLLM's backend: its output, with no logprobs
    tokens = [int(t) for t in last["token_ids"]]
    expected = eager_logprobs(language, language.encode(PROMPT) + tokens)
    start = len(language.encode(PROMPT)) - 1
    total = sum(float(expected[start + i, t]) for i, t in enumerate(tokens))
    assert float(last["cumulative_logprob"][0]) == pytest.approx(total, abs=1e-3)


def test_without_return_flags_only_the_usual_outputs_are_sent(language):
    (last,) = answers(language, {"max_tokens": 4, "logprobs": 2}, stream=False, returns=())
    assert set(last) == {"text_output", "token_ids", "finish_reason"}
