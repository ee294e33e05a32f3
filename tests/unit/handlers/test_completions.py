"""Completion requests and the streaming serving mode with no runtime: a tiny GPT-2 and BPE
tokenizer saved as a Hugging Face folder; requests checked against the limits; pieces per step;
and TorchServe's continuous-batching handler driven with a fake context."""

from __future__ import annotations

import json

import pytest

from handlers.protocols.completion import completion_json
from handlers.engines.generating import Generating
from handlers.preprocessing.processing import RequestError
from tests.unit.handlers.conftest import drain, step


@pytest.mark.parametrize(
    "body, message",
    [
        ({"prompt": "the", "max_tokens": 17}, "max_tokens: 17 is outside 1..16"),
        ({"prompt": "the", "temperature": -1}, "temperature: -1.0 is outside 0 (greedy) or 0.01"),
        ({"prompt": "the", "top_p": 0}, "top_p: 0.0 is outside (0, 1]"),
        ({"prompt": "the", "top_k": 1.5}, "top_k: expected a whole number"),
        ({"prompt": "the", "seed": "7"}, "seed: Input should be a valid integer, got '7'"),
        ({"prompt": "the", "stop": ["a", "b", "c", "d", "e"]}, "stop: 5 strings is over this"),
        ({"prompt": "the", "n": 2}, "n: 2 is outside 1..1"),
        ({"prompt": ""}, "prompt: give the text to continue"),
        ({"prompt": "the " * 40}, "exceed the model's context of 32 tokens"),
        (b'{"prompt": "\xff"}', "the body is not UTF-8"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_requests_name_the_field_and_the_limit(language, body, message):
    with pytest.raises(RequestError) as error:
        language.read(body)
    assert message in str(error.value)


def test_defaults_come_from_the_spec(language):
    completion = language.read({"prompt": "the battery"})
    assert completion.sampling.max_tokens == 8 and completion.sampling.greedy
    assert completion.prompt_ids == language.encode("the battery") and not completion.stream


def test_streams_send_a_piece_per_token_others_one_answer(language):
    generating = Generating(language, max_sequences=4)
    generating.admit("stream", {"prompt": "the film", "stream": True, "max_tokens": 5})
    generating.admit("whole", {"prompt": "the film", "max_tokens": 5})
    pieces = drain(generating)
    streamed, whole = pieces["stream"], pieces["whole"]
    assert [p.final for p in streamed] == [False] * (len(streamed) - 1) + [True]
    assert [p.text for p in whole[:-1]] == [""] * (len(whole) - 1)
    assert sum((p.token_ids for p in streamed), []) == whole[-1].token_ids
    assert "".join(p.text for p in streamed) == whole[-1].text
    assert json.loads(completion_json(whole[-1], False))["token_ids"] == whole[-1].token_ids


def test_at_most_max_sequences_decode_together_the_rest_wait_in_order(language):
    generating = Generating(language, max_sequences=2)
    for key in range(5):
        generating.admit(key, {"prompt": "the food", "max_tokens": 3})
    first = generating.step()
    assert sorted(first) == [0, 1]
    assert sorted(drain(generating)) == [0, 1, 2, 3, 4]


def test_a_cancelled_request_leaves_and_frees_its_place(language):
    generating = Generating(language, max_sequences=1)
    generating.admit("gone", {"prompt": "the", "max_tokens": 16})
    generating.admit("next", {"prompt": "the", "max_tokens": 2})
    generating.step()
    generating.cancel("gone")
    assert generating.keys == ["next"] and not generating.loop.running
    assert "next" in drain(generating)


def test_torchserve_continuous_batching_steps_and_stopping(handler):
    service, context = handler
    stream = json.dumps({"prompt": "the", "stream": True, "max_tokens": 3}).encode()
    bad = json.dumps({"prompt": "the", "max_tokens": 99}).encode()
    first = step(service, context, {"s": stream, "bad": bad})
    # a request answered at its first step is a plain response: no stream header (None)
    assert first[1][1] is None and context.statuses[1] == 400
    assert first[0][1] is False and json.loads(first[0][0])["token_ids"]
    stops = [first[0][1]]
    while not stops[-1]:
        (body, stop), *_ = step(service, context, {"s": None})
        stops.append(stop)
    last = json.loads(body.splitlines()[-1])  # a lone stream: several tokens per call
    assert stops[-1] is True and last["finish_reason"] in ("stop", "length")


def test_torchserve_drops_a_request_the_frontend_dropped(handler, monkeypatch):
    from handlers.adapters import torchserve_generation

    monkeypatch.setattr(torchserve_generation, "ALONE_BURST_S", 0.0)  # "kept" must not finish
    service, context = handler
    body = json.dumps({"prompt": "the", "stream": True, "max_tokens": 16}).encode()
    step(service, context, {"gone": body, "kept": body})
    step(service, context, {"kept": None})  # TorchServe removed "gone" (client closed)
    assert service.engine.generating.generating.keys == ["kept"]


def test_openai_routes_answer_in_openai_shape(handler):
    service, context = handler
    context.url_paths = {0: "v1/completions", 1: "v1/chat/completions", 2: "v1/completions"}
    completion = json.dumps(
        {
            "model": "tiny",
            "prompt": ["the"],
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},  # else no usage chunk, as OpenAI
        }
    )
    chat = {"messages": [{"role": "user", "content": "the film"}], "max_completion_tokens": 2}
    two = json.dumps({"prompt": "the", "n": 2})
    first = step(service, context, {"c": completion.encode(), "chat": json.dumps(chat), "n": two})
    assert context.statuses[2] == 400 and "n: 2 greedy choices" in first[2][0]
    streamed, whole = [first[0][0]], first[1][0]
    running = [key for key, (_, stop) in zip(("c", "chat"), first) if stop is False]
    while running:  # the frontend sends back what it was told is unfinished
        context.url_paths = {i: "v1/completions" for i in range(len(running))}
        answers = dict(zip(running, step(service, context, dict.fromkeys(running))))
        streamed.append(answers["c"][0] if "c" in answers else "")
        whole = answers["chat"][0] if "chat" in answers else whole
        running = [key for key, (_, stop) in answers.items() if stop is False]
    events = [e for body in streamed for e in body.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[0]["object"] == "text_completion" and chunks[-1]["usage"]["completion_tokens"]
    assert chunks[-1]["choices"] == [] and all("usage" not in c for c in chunks[:-1])
    answer = json.loads(whole)
    assert answer.get("object") == "chat.completion", answer
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] <= 2 < answer["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    "route, body, message",
    [
        ("v1/embeddings", {"input": "x"}, "unknown route 'v1/embeddings'"),
        ("v1/chat/completions", {"messages": [{"role": "bot", "content": "x"}]}, "role"),
        ("v1/chat/completions", {"prompt": "x"}, "prompt: not a field of a chat request"),
        ("v1/completions", {"prompt": "x", "logprobs": 21}, "logprobs: 21 is outside 0..20"),
        ("v1/completions", {"prompt": "x", "echo": "yes"}, "echo: expected true or false"),
        ("v1/chat/completions", {"messages": [], "top_logprobs": 2}, "messages: give a list"),
        ("v1/completions", {"prompt": "x", "logit_bias": {"-3": 1}}, "logit_bias: key '-3'"),
        ("v1/completions", {"prompt": "x", "presence_penalty": 2.5}, "presence_penalty: 2.5"),
        ("v1/completions", {"prompt": "x", "repetition_penalty": 0}, "repetition_penalty: 0"),
    ],
)
def test_openai_mistakes_are_400s_naming_the_field(handler, route, body, message):
    service, context = handler
    context.url_paths = {0: route}
    (answer, stop), *_ = step(service, context, {"r": json.dumps(body)})
    assert context.statuses[0] == 400 and message in answer and stop is None
    if route != "v1/embeddings":  # an OpenAI route: OpenAI's error shape, as vLLM's
        error = json.loads(answer)["error"]
        assert error["type"] == "BadRequestError" and error["code"] == 400
        assert error["param"] == message.split(":")[0] or ":" not in message


def test_a_stream_without_include_usage_has_no_usage_chunk():
    """OpenAI sends the usage chunk (choices: []) only when stream_options asks for it; clients
    such as genai-perf read choices[0] of every chunk."""
    from handlers.engines.completions import Piece
    from handlers.protocols import GENERATION_PROTOCOLS, ModelFacts

    completions = GENERATION_PROTOCOLS["openai-completion"]
    for options, chunks_with_usage in (({}, 0), ({"stream_options": {"include_usage": True}}, 1)):
        _, answer = completions.read(
            {"prompt": "the", "stream": True, **options}, ModelFacts(None, 4096)
        )
        body = answer.piece(Piece(" film", [5])) + answer.piece(Piece("", [], "stop"))
        events = [json.loads(e[6:]) for e in body.split("\n\n") if e and e != "data: [DONE]"]
        assert sum("usage" in e for e in events) == chunks_with_usage
        assert all(e["choices"] for e in events if "usage" not in e)


def test_sampling_parameters_as_strings_are_read_as_vllm_reads_them():
    from handlers.engines.completions import vllm_numbers

    read = vllm_numbers({"max_tokens": "24", "temperature": "0.5", "top_k": 3, "stop": ["."]})
    assert read == {"max_tokens": 24, "temperature": 0.5, "top_k": 3, "stop": ["."]}
    with pytest.raises(RequestError, match="max_tokens: expected a number, got 'many'"):
        vllm_numbers({"max_tokens": "many"})


def test_a_lone_stream_decodes_on_within_one_handle_call_after_its_first_token(
    handler, monkeypatch
):
    """TorchServe: one stream alone gets its tokens in bursts (one frontend round trip per
    burst); its first token comes alone, and two streams get one token each per call."""
    from handlers.adapters import torchserve_generation

    service, context = handler
    body = json.dumps({"prompt": "the", "stream": True, "max_tokens": 6}).encode()

    def calls_for_one_answer() -> list[list[dict]]:
        chunks = [step(service, context, {"s": body})[0]]
        while chunks[-1][1] is False:
            chunks.append(step(service, context, {"s": None})[0])
        return [[json.loads(line) for line in chunk.splitlines()] for chunk, _ in chunks]

    monkeypatch.setattr(torchserve_generation, "ALONE_BURST_S", 0.0)  # one token per call
    alone_per_token = calls_for_one_answer()
    assert len(alone_per_token) >= 3 and all(len(c) == 1 for c in alone_per_token)
    monkeypatch.setattr(torchserve_generation, "ALONE_BURST_S", 60.0)  # the whole answer
    bursts = calls_for_one_answer()
    assert [len(c) for c in bursts] == [1, len(alone_per_token) - 1]  # first token alone
    assert [p["token_ids"] for c in bursts for p in c] == [
        p["token_ids"] for c in alone_per_token for p in c
    ]
    step(service, context, {"a": body, "b": body})
    two = step(service, context, {"a": None, "b": None})
    assert [len(chunk.splitlines()) for chunk, _ in two] == [1, 1]  # not alone: no burst
