"""OpenAI's sampling fields in the decode loop, against eager computation on the tiny GPT-2 of
conftest.py: log-probabilities (new tokens and, with echo, the prompt's), n choices decoded
side by side with seeds, penalties and logit_bias; and the answers' shapes on the OpenAI
routes."""

from __future__ import annotations

import json

import pytest
import torch

from handlers.engines.batching import Failure
from handlers.engines.completions import LanguageModel, Piece
from handlers.engines.generating import Generating
from handlers.engines.sampling import Sampling, adjusted
from handlers.protocols import GENERATION_PROTOCOLS, ModelFacts
from tests.unit.handlers.conftest import LIMITS, drain

PROMPT = "the film"


@pytest.fixture(scope="module")
def language4(folder):
    return LanguageModel(folder, LIMITS, max_choices=4)


def run(language: LanguageModel, body: dict, max_sequences: int = 4) -> list[Piece]:
    generating = Generating(language, max_sequences=max_sequences)
    assert not isinstance(generating.admit("r", body), Failure)
    return drain(generating)["r"]


def eager_logprobs(language: LanguageModel, ids: list[int]) -> torch.Tensor:
    """log-softmax of the model's logits at every position of ids, in one forward."""
    with torch.inference_mode():
        logits = language.model(input_ids=torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def test_logprobs_of_new_tokens_equal_eager_log_softmax(language4):
    whole = run(language4, {"prompt": PROMPT, "max_tokens": 6, "logprobs": 5})[-1]
    prompt = language4.encode(PROMPT)
    expected = eager_logprobs(language4, prompt + whole.token_ids)
    assert len(whole.logprobs) == len(whole.token_ids) > 0
    for i, (token, score) in enumerate(zip(whole.token_ids, whole.logprobs)):
        row = expected[len(prompt) - 1 + i]
        assert score.token == language4.decode([token])
        assert score.logprob == pytest.approx(float(row[token]), abs=1e-4)
        best = torch.topk(row, 5)
        assert [text for text, _ in score.top] == [language4.decode([t]) for t in best.indices]
        assert [v for _, v in score.top] == pytest.approx(best.values.tolist(), abs=1e-4)


def test_echo_scores_the_prompt_tokens_as_eager_does(language4):
    body = {"prompt": PROMPT, "max_tokens": 2, "logprobs": 1, "prompt_logprobs": 1}
    whole = run(language4, body)[-1]
    prompt = language4.encode(PROMPT)
    expected = eager_logprobs(language4, prompt)
    first, *rest = whole.prompt_logprobs
    assert first.logprob is None and first.token == language4.decode(prompt[:1])
    assert len(rest) == len(prompt) - 1
    for i, score in enumerate(rest, start=1):
        assert score.logprob == pytest.approx(float(expected[i - 1, prompt[i]]), abs=1e-4)


def test_n_choices_decode_together_each_seeded_and_reproducible(language4):
    body = {"prompt": PROMPT, "max_tokens": 6, "n": 4, "temperature": 1.0, "seed": 7}
    first, again = run(language4, body), run(language4, body)
    texts = {p.index: p.token_ids for p in first if p.final}
    assert sorted(texts) == [0, 1, 2, 3]
    assert texts == {p.index: p.token_ids for p in again if p.final}
    assert len({tuple(t) for t in texts.values()}) > 1  # four draws, not one copied
    alone = run(language4, {**body, "n": 1, "seed": 9})  # choice 2 is seeded seed + 2
    assert alone[-1].token_ids == texts[2]


def test_n_over_the_batch_or_greedy_is_refused_by_name(language4):
    from handlers.preprocessing.processing import RequestError

    with pytest.raises(RequestError, match=r"n: 5 is outside 1..4"):
        language4.read({"prompt": PROMPT, "n": 5, "temperature": 1.0})
    with pytest.raises(RequestError, match="n: 2 greedy choices would all be the same"):
        language4.read({"prompt": PROMPT, "n": 2})


def test_a_request_with_n_choices_waits_until_all_its_sequences_fit(language4):
    generating = Generating(language4, max_sequences=4)
    generating.admit("one", {"prompt": PROMPT, "max_tokens": 3})
    generating.admit("four", {"prompt": PROMPT, "max_tokens": 3, "n": 4, "temperature": 1.0})
    assert sorted(generating.step()) == ["one"]  # 1 + 4 > 4: four waits its turn, whole
    pieces = drain(generating)
    assert {p.index for p in pieces["four"] if p.final} == {0, 1, 2, 3}
    assert not generating.busy and not generating.choices_left


def test_logit_bias_and_penalties_follow_vllms_formulas():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    sampling = Sampling(
        logit_bias=((2, 1.0),), repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25
    )
    got = adjusted(logits, sampling, prompt=[0], output=[1, 1, 3])
    # bias on 2; repetition over prompt and output (0, 1, 3): positive / 2, negative * 2;
    # then frequency (count in the output) and presence (in the output at all)
    want = torch.tensor([2.0 / 2, -1.0 * 2 - 0.5 * 2 - 0.25, 1.5, 3.0 / 2 - 0.5 - 0.25])
    assert torch.allclose(got, want)
    assert adjusted(logits, Sampling(), [0], [1]) is logits  # nothing asked: untouched


def test_a_strong_logit_bias_makes_greedy_pick_that_token(language4):
    token = language4.encode(" film")[0]
    body = {"prompt": PROMPT, "max_tokens": 4, "logit_bias": {str(token): 100}}
    whole = run(language4, body)[-1]
    assert whole.token_ids == [token] * 4


def test_frequency_penalty_changes_a_repeating_greedy_answer(language4):
    token = language4.encode(" film")[0]
    bias = {"logit_bias": {str(token): 8}}
    plain = run(language4, {"prompt": PROMPT, "max_tokens": 6, **bias})[-1].token_ids
    penalised = run(
        language4, {"prompt": PROMPT, "max_tokens": 6, "frequency_penalty": 2.0, **bias}
    )[-1].token_ids
    assert plain.count(token) > penalised.count(token)


def openai_answer(route: str, body: dict, pieces: list[Piece], language: LanguageModel) -> str:
    protocol = GENERATION_PROTOCOLS[route]
    fields, writer = protocol.read(dict(body), ModelFacts(None, 4096))  # read pops fields
    writer.admitted(language.read(fields))
    return "".join(writer.piece(p) for p in pieces)


def test_completions_answer_n_choices_with_logprobs_and_echo_in_openais_shape(language4):
    body = {
        "prompt": PROMPT,
        "max_tokens": 3,
        "n": 2,
        "temperature": 1.0,
        "seed": 1,
        "logprobs": 2,
        "echo": True,
    }
    fields, _ = GENERATION_PROTOCOLS["openai-completion"].read(dict(body), ModelFacts(None, 4096))
    pieces = run(language4, fields)
    answer = json.loads(openai_answer("openai-completion", body, pieces, language4))
    choices = answer["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    for choice in choices:
        logprobs = choice["logprobs"]
        assert choice["text"].startswith(PROMPT)
        assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
        assert "".join(logprobs["tokens"]) == choice["text"]
        assert logprobs["text_offset"][1] == len(logprobs["tokens"][0])
        assert all(len(top) <= 3 for top in logprobs["top_logprobs"][1:])  # 2 + the chosen
    made = sum(len(p.token_ids) for p in pieces if p.final)
    assert answer["usage"]["completion_tokens"] == made


def test_a_stream_of_n_choices_indexes_its_chunks_and_ends_once(language4):
    body = {"prompt": PROMPT, "max_tokens": 3, "n": 2, "temperature": 1.0, "stream": True}
    pieces = run(language4, body)
    events = openai_answer("openai-completion", body, pieces, language4).split("\n\n")
    events = [e for e in events if e]
    assert events.count("data: [DONE]") == 1 and events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: "))["choices"][0] for e in events[:-1]]
    assert {c["index"] for c in chunks} == {0, 1}
    assert sum(c["finish_reason"] is not None for c in chunks) == 2


def test_chat_logprobs_come_in_chats_shape(language4):
    body = {
        "messages": [{"role": "user", "content": "the film"}],
        "max_tokens": 3,
        "logprobs": True,
        "top_logprobs": 2,
    }
    fields, _ = GENERATION_PROTOCOLS["openai-chat"].read(dict(body), ModelFacts(None, 4096))
    answer = json.loads(openai_answer("openai-chat", body, run(language4, fields), language4))
    content = answer["choices"][0]["logprobs"]["content"]
    assert content and all(len(entry["top_logprobs"]) == 2 for entry in content)
    for entry in content:
        assert entry["bytes"] == list(entry["token"].encode("utf-8")) and entry["logprob"] <= 0
    without = {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}
    fields, _ = GENERATION_PROTOCOLS["openai-chat"].read(dict(without), ModelFacts(None, 4096))
    plain = json.loads(openai_answer("openai-chat", without, run(language4, fields), language4))
    assert plain["choices"][0]["logprobs"] is None


def test_the_native_and_tensor_protocols_take_one_choice():
    from handlers.preprocessing.processing import RequestError

    for name, body in (
        ("completion", {"prompt": "the", "n": 2}),
        ("generate", {"text_input": None, "sampling_parameters": None}),
    ):
        protocol = GENERATION_PROTOCOLS[name]
        if name == "generate":
            import numpy as np

            body = {
                "text_input": np.array([b"the"], dtype=object),
                "sampling_parameters": np.array([b'{"n": 3}'], dtype=object),
            }
        with pytest.raises(RequestError, match="are answered on the OpenAI routes"):
            protocol.read(body, ModelFacts(None, 4096))


def test_models_tokenize_and_detokenize_answer_at_once_on_torchserve(handler):
    from tests.unit.handlers.conftest import step

    service, context = handler
    routes = ["v1/models", "v1/models/tiny", "v1/models/other", "tokenize", "detokenize"]
    context.url_paths, context.statuses = dict(enumerate(routes)), {}
    bodies = [None, None, None, json.dumps({"prompt": PROMPT}), json.dumps({"tokens": [5, 9]})]
    answers = step(service, context, dict(zip(routes, bodies)))
    assert all(stop is None for _, stop in answers)  # whole answers, nothing left running
    listed, card, missing, tokens, text = (json.loads(body) for body, _ in answers)
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["tiny"]
    assert card["id"] == "tiny" and card["max_model_len"] == 32
    assert context.statuses[2] == 404 and missing["error"]["type"] == "NotFoundError"
    language = service.engine.generating.generating.language
    assert tokens["tokens"] == language.encode(PROMPT) and tokens["count"] == len(tokens["tokens"])
    assert text == {"prompt": language.decode([5, 9])}
    assert not service.engine.generating.generating.busy


@pytest.mark.parametrize(
    "route, body, message",
    [
        ("tokenize", {"prompt": 5}, "prompt: give the text to tokenize"),
        ("tokenize", {"messages": [{"role": "x"}]}, "messages[0].role"),
        ("detokenize", {"tokens": [1, -1]}, "tokens[1]: -1 is not a token id"),
        ("detokenize", {"tokens": "abc"}, "tokens: give a list"),
        ("detokenize", "{", "the body is not JSON"),
    ],
)
def test_model_route_mistakes_are_400s_in_openais_shape(handler, route, body, message):
    from tests.unit.handlers.conftest import step

    service, context = handler
    context.url_paths, context.statuses = {0: route}, {}
    sent = body if isinstance(body, str) else json.dumps(body)
    ((answer, stop),) = step(service, context, {"r": sent})
    error = json.loads(answer)["error"]
    assert context.statuses[0] == 400 and message in error["message"] and stop is None
