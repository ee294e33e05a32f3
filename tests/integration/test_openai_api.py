"""The `openai` client, unchanged, on every OpenAI field served, against review_gpt on a real
TorchServe: log-probabilities equal eager's log-softmax (new tokens and, with echo, the
prompt's), n choices reproducible with a seed, penalties and logit_bias, chat logprobs,
v1/models, tokenize/detokenize, errors in OpenAI's shape; each alone and 16 at once, streamed
and not. On Triton, the vLLM backend's optional outputs (log-probabilities, token counts)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch

from scripts.runtimes.torchserve.client import TorchServeClient
from tests.conftest import EXAMPLES, LAYOUT
from tests.integration.test_generation import openai_client

pytestmark = pytest.mark.integration
SPEC = next(m for m in EXAMPLES if m.task.generation is not None)
PROMPT = "The battery"


@pytest.fixture(scope="module")
def eager():
    from transformers import AutoModelForCausalLM

    folder = LAYOUT.artifact(SPEC).root / "pretrained"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    from tokenizers import Tokenizer

    return model, Tokenizer.from_file(str(folder / "tokenizer.json"))


def log_softmax(eager, ids: list[int]) -> torch.Tensor:
    model, _ = eager
    with torch.inference_mode():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)


def test_completion_logprobs_with_echo_equal_eager(torchserve, eager):
    client = openai_client(torchserve)
    answer = client.completions.create(
        model=SPEC.name, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=3, echo=True
    )
    choice = answer.choices[0]
    _, tokenizer = eager
    prompt = tokenizer.encode(PROMPT, add_special_tokens=False).ids
    expected = log_softmax(eager, prompt + tokenizer.encode(choice.text[len(PROMPT) :]).ids)
    logprobs = choice.logprobs
    assert choice.text.startswith(PROMPT) and "".join(logprobs.tokens) == choice.text
    assert logprobs.token_logprobs[0] is None
    ids = prompt + tokenizer.encode(choice.text[len(PROMPT) :], add_special_tokens=False).ids
    for position, (token, served) in enumerate(zip(ids[1:], logprobs.token_logprobs[1:]), 1):
        assert served == pytest.approx(float(expected[position - 1, token]), abs=1e-4)
    assert all(len(top) <= 4 for top in logprobs.top_logprobs[1:])


def test_n_choices_with_a_seed_are_reproducible(torchserve):
    client = openai_client(torchserve)
    asked = dict(model=SPEC.name, prompt=PROMPT, max_tokens=10, n=4, temperature=1.0, seed=5)
    first, again = (client.completions.create(**asked) for _ in range(2))
    texts = [c.text for c in sorted(first.choices, key=lambda c: c.index)]
    assert [c.index for c in first.choices] == [0, 1, 2, 3]
    assert texts == [c.text for c in sorted(again.choices, key=lambda c: c.index)]
    assert len(set(texts)) > 1
    streamed = client.completions.create(**asked, stream=True)
    joined: dict[int, str] = {}
    for chunk in streamed:
        for choice in chunk.choices:
            joined[choice.index] = joined.get(choice.index, "") + choice.text
    assert [joined[i] for i in range(4)] == texts


def test_penalties_and_logit_bias_steer_the_tokens(torchserve, eager):
    client = openai_client(torchserve)
    _, tokenizer = eager
    token = tokenizer.encode(" good", add_special_tokens=False).ids[0]
    forced = client.completions.create(
        model=SPEC.name, prompt=PROMPT, max_tokens=4, temperature=0, logit_bias={str(token): 100}
    )
    assert forced.choices[0].text == tokenizer.decode([token] * 4)
    biased = dict(model=SPEC.name, prompt=PROMPT, max_tokens=8, temperature=0)
    plain = client.completions.create(**biased, logit_bias={str(token): 6})
    penalised = client.completions.create(
        **biased, logit_bias={str(token): 6}, frequency_penalty=2.0, presence_penalty=1.0
    )
    assert plain.choices[0].text.count(" good") > penalised.choices[0].text.count(" good")


def test_chat_logprobs_and_the_model_list(torchserve):
    client = openai_client(torchserve)
    reply = client.chat.completions.create(
        model=SPEC.name,
        messages=[{"role": "user", "content": "How was the film?"}],
        max_tokens=6,
        logprobs=True,
        top_logprobs=2,
    )
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    models = client.models.list()
    assert [m.id for m in models.data] == [SPEC.name]
    assert client.models.retrieve(SPEC.name).id == SPEC.name


def test_tokenize_detokenize_and_errors_in_openais_shape(torchserve):
    from openai import BadRequestError, NotFoundError

    base = f"{torchserve.inference_url}/predictions/{SPEC.name}/{SPEC.version}"
    headers = {
        "Authorization": f"Bearer {TorchServeClient.for_server(torchserve).token('inference')}"
    }
    tokens = requests.post(f"{base}/tokenize", json={"prompt": PROMPT}, headers=headers, timeout=30)
    assert tokens.status_code == 200 and tokens.json()["count"] == len(tokens.json()["tokens"])
    text = requests.post(
        f"{base}/detokenize", json={"tokens": tokens.json()["tokens"]}, headers=headers, timeout=30
    )
    assert text.json() == {"prompt": PROMPT}
    client = openai_client(torchserve)
    with pytest.raises(BadRequestError) as error:
        client.completions.create(model=SPEC.name, prompt=PROMPT, logprobs=21)
    assert error.value.body["param"] == "logprobs" and error.value.body["type"] == "BadRequestError"
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")


def test_sixteen_clients_at_once_stream_and_not_each_get_their_own_answer(torchserve):
    client = openai_client(torchserve)
    asked = dict(model=SPEC.name, max_tokens=8, temperature=0, logprobs=1)
    prompts = [f"{PROMPT} {i}" for i in range(16)]
    alone = [client.completions.create(prompt=p, **asked).choices[0].text for p in prompts]

    def call(i: int) -> str:
        if i % 2:
            chunks = client.completions.create(prompt=prompts[i], stream=True, **asked)
            return "".join(c.choices[0].text for c in chunks if c.choices)
        return client.completions.create(prompt=prompts[i], **asked).choices[0].text

    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(call, range(16)))
    assert together == alone


def test_every_structured_answer_validates_across_200_varied_schemas(torchserve):
    """response_format json_schema through the openai client, 16 at once beside free requests:
    every answer parses and validates, even from a 0.87M-parameter model."""
    import json
    import random

    import jsonschema

    from tests.unit.handlers.test_structured_output import object_schema

    client = openai_client(torchserve)
    rng = random.Random(1)
    schemas = [object_schema(rng) for _ in range(200)]

    def call(i: int) -> tuple[dict, str, str]:
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": f"s{i}", "schema": schemas[i]},
        }
        answer = client.chat.completions.create(
            model=SPEC.name,
            messages=[{"role": "user", "content": "Describe the film as JSON."}],
            max_tokens=90,
            temperature=0.8,
            seed=i,
            response_format=response_format,
        )
        choice = answer.choices[0]
        return schemas[i], choice.message.content or "", choice.finish_reason

    with ThreadPoolExecutor(16) as pool:
        free = [
            pool.submit(client.completions.create, model=SPEC.name, prompt=PROMPT, max_tokens=8)
        ]
        results = list(pool.map(call, range(200)))
    for schema, text, finish_reason in results:
        assert finish_reason == "stop", (schema, text)
        jsonschema.validate(json.loads(text), schema)
    assert free[0].result().choices[0].text


def test_tritons_generate_sends_vllms_optional_outputs_equal_to_eager(triton, eager):
    """`return_logprobs` & co. on Triton's generate endpoint, as vLLM's backend answers them."""
    url = f"http://{triton.http_url}/v2/models/{SPEC.name}/generate"
    body = {
        "text_input": PROMPT,
        "sampling_parameters": '{"max_tokens": 6, "temperature": 0, "logprobs": 2}',
        "exclude_input_in_output": True,
        **{
            f"return_{name}": True
            for name in ("logprobs", "cumulative_logprob", "num_input_tokens", "num_output_tokens")
        },
    }
    answer = requests.post(url, json=body, timeout=60).json()
    _, tokenizer = eager
    prompt = tokenizer.encode(PROMPT, add_special_tokens=False).ids
    tokens = answer["token_ids"] if isinstance(answer["token_ids"], list) else [answer["token_ids"]]
    expected = log_softmax(eager, prompt + tokens)
    scored = json.loads(answer["logprobs"])
    assert len(scored) == len(tokens) == answer["num_output_tokens"] > 0
    assert answer["num_input_tokens"] == len(prompt)
    for i, (token, entry) in enumerate(zip(tokens, scored)):
        assert entry[str(token)]["logprob"] == pytest.approx(
            float(expected[len(prompt) - 1 + i, token]), abs=1e-4
        )
        assert entry[str(token)]["rank"] == 1  # greedy: the most likely token
    total = sum(float(expected[len(prompt) - 1 + i, t]) for i, t in enumerate(tokens))
    assert answer["cumulative_logprob"] == pytest.approx(total, abs=1e-3)
