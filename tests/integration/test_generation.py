"""review_gpt on the real servers, read as a client reads a stream: tokens arrive one by one
and equal eager generate(); bad requests get a 400 naming the field; 500 clients that drop
mid-stream leave the worker's memory where it was and the server answering the next request
exactly. (Every endpoint alone and 16 in flight: tests/integration/measure/test_verify_served.)"""

from __future__ import annotations

import json

import psutil
import pytest
import requests

from scripts.measure.verify_generation import golden_generation
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.runtimes.processes import read_pid
from tests.conftest import EXAMPLES, LAYOUT

pytestmark = pytest.mark.integration
SPEC = next(m for m in EXAMPLES if m.task.generation is not None)
DROPS = 500
BAD = {
    "max_tokens": {"prompt": "The", "max_tokens": 10_000},
    "temperature": {"prompt": "The", "temperature": -0.5},
    "top_p": {"prompt": "The", "top_p": 1.5},
    "unknown field": {"prompt": "The", "beam_width": 4},
    "prompt": {"prompt": "word " * 400},  # over the 128-token context
}


def calls(server, runtime: str) -> dict:
    return RUNTIMES[runtime].endpoints.generation_endpoints(server, SPEC)


@pytest.fixture(scope="module")
def golden():
    return golden_generation(SPEC, LAYOUT)


@pytest.mark.parametrize("runtime", ["torchserve", "triton"])
def test_streamed_tokens_arrive_one_by_one_and_equal_eager(runtime, torchserve, triton, golden):
    server = {"torchserve": torchserve, "triton": triton}[runtime]
    stream = next(call for name, call in calls(server, runtime).items() if "stream" in name)
    prompt, expected = golden["prompts"][-1], golden["token_ids"][-1]
    answer = stream({"prompt": prompt, "max_tokens": golden["max_tokens"]})
    assert answer["token_ids"] == expected
    assert answer["pieces"] >= len(expected) > 1  # one response per token, not one at the end


@pytest.mark.parametrize("runtime", ["torchserve", "triton"])
@pytest.mark.parametrize("field", sorted(BAD))
def test_bad_requests_get_a_400_naming_the_field(runtime, field, torchserve, triton):
    server = {"torchserve": torchserve, "triton": triton}[runtime]
    for name, call in calls(server, runtime).items():
        answer = call(BAD[field])
        assert answer["status"] == 400, (name, answer)
        assert field.split()[0] in json.dumps(answer), (name, answer)


def test_non_utf8_bodies_get_a_400(torchserve, triton):
    client = TorchServeClient.for_server(torchserve)
    reply = client.predict_raw(SPEC.name, b'{"prompt": "\xff\xfe"}', "application/json")
    assert reply.status_code == 400 and "UTF-8" in reply.text
    url = f"http://{triton.http_url}/v2/models/{SPEC.name}/generate"
    reply = requests.post(url, data=b'{"text_input": "\xff\xfe"}', timeout=30)
    assert reply.status_code == 400, reply.text


def worker_rss(runtime: str, server) -> int:
    """The resident memory of the process that runs the decode loop."""
    if runtime == "torchserve":
        pids = TorchServeClient.for_server(server).worker_pids(SPEC.name)
    else:  # the Python backend's stub for this model, a child of tritonserver
        pids = [
            p.pid
            for p in psutil.Process(read_pid(server.pid_file)).children(recursive=True)
            if any(SPEC.name in part for part in p.cmdline())
        ]
    assert pids, f"no {runtime} process serves {SPEC.name}"
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


def drop_after_first_piece(runtime: str, server) -> None:
    """Open a stream, read its first token, and hang up."""
    body = {"prompt": "The battery", "max_tokens": 64, "stream": True}
    if runtime == "torchserve":
        reply = TorchServeClient.for_server(server).predict_raw(SPEC.name, body, stream=True)
    else:
        triton_body = {
            "text_input": body["prompt"],
            "stream": True,
            "sampling_parameters": json.dumps({"max_tokens": 64}),
        }
        url = f"http://{server.http_url}/v2/models/{SPEC.name}/generate_stream"
        reply = requests.post(url, json=triton_body, stream=True, timeout=60)
    with reply:
        next(reply.iter_lines())


@pytest.mark.parametrize("runtime", ["torchserve", "triton"])
def test_500_dropped_streams_leave_memory_and_answers_as_they_were(
    runtime, torchserve, triton, golden
):
    server = {"torchserve": torchserve, "triton": triton}[runtime]
    stream = next(call for name, call in calls(server, runtime).items() if "stream" in name)
    check = {"prompt": golden["prompts"][3], "max_tokens": golden["max_tokens"]}
    assert stream(check)["token_ids"] == golden["token_ids"][3]
    for _ in range(20):  # warm: allocator pools and caches reach their size
        drop_after_first_piece(runtime, server)
    before = worker_rss(runtime, server)
    for _ in range(DROPS):
        drop_after_first_piece(runtime, server)
    assert stream(check)["token_ids"] == golden["token_ids"][3]
    after = worker_rss(runtime, server)
    print(f"{runtime}: worker RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")
    # a leaked sequence keeps its cache (~150 KiB here): 500 of them would add ~75 MiB
    assert after - before < 32 * 2**20, (before, after)


def openai_client(server):
    """OpenAI's own client: base URL the model's TorchServe route, key the inference token."""
    from openai import OpenAI

    base = f"{server.inference_url}/predictions/{SPEC.name}/{SPEC.version}/v1"
    token = TorchServeClient.for_server(server).token("inference")
    return OpenAI(base_url=base, api_key=token, max_retries=0, timeout=60)


def test_the_openai_client_completes_and_streams(torchserve, golden):
    client = openai_client(torchserve)
    prompt, expected = golden["prompts"][-1], golden["token_ids"][-1]
    whole = client.completions.create(
        model=SPEC.name, prompt=prompt, max_tokens=golden["max_tokens"], temperature=0
    )
    assert whole.choices[0].text == golden["texts"][-1]
    assert whole.usage.completion_tokens == len(expected)
    chunks = list(
        client.completions.create(
            model=SPEC.name, prompt=prompt, max_tokens=golden["max_tokens"], stream=True
        )
    )
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == golden["texts"][-1] and len(texts) >= len(expected)


def test_the_openai_client_chats_and_hears_its_mistakes(torchserve):
    from openai import BadRequestError

    client = openai_client(torchserve)
    messages = [{"role": "user", "content": "How was the film?"}]
    reply = client.chat.completions.create(model=SPEC.name, messages=messages, max_tokens=12)
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].message.content
    streamed = client.chat.completions.create(
        model=SPEC.name, messages=messages, max_tokens=12, stream=True
    )
    pieces = [c.choices[0].delta.content for c in streamed if c.choices]
    assert "".join(p for p in pieces if p) == reply.choices[0].message.content
    with pytest.raises(BadRequestError) as error:  # the client keeps the "error" field as body
        client.completions.create(model=SPEC.name, prompt="The", n=2)
    assert "n: 2" in str(error.value.body)
    with pytest.raises(BadRequestError) as error:
        client.completions.create(model=SPEC.name, prompt="The", max_tokens=10_000)
    assert "max_tokens" in str(error.value.body)


def test_the_openai_mapping_example_completes_and_streams_on_triton(triton, golden):
    """docs/examples/openai_on_triton.py, as a user runs it, against the served model."""
    import importlib.util

    path = LAYOUT.root / "docs" / "examples" / "openai_on_triton.py"
    found = importlib.util.spec_from_file_location("openai_on_triton", path)
    example = importlib.util.module_from_spec(found)
    found.loader.exec_module(example)
    prompt, expected = golden["prompts"][-1], golden["token_ids"][-1]
    request = {"prompt": prompt, "max_tokens": golden["max_tokens"], "temperature": 0}
    whole = example.complete(triton.grpc_url, SPEC.name, request)
    assert whole["choices"][0]["text"] == golden["texts"][-1]
    assert whole["usage"]["completion_tokens"] == len(expected)
    chunks = list(example.complete(triton.grpc_url, SPEC.name, {**request, "stream": True}))
    assert "".join(c["choices"][0]["text"] for c in chunks) == golden["texts"][-1]
    assert len(chunks) >= len(expected) and chunks[-1]["choices"][0]["finish_reason"]
    with pytest.raises(ValueError, match="max_tokens"):
        example.complete(triton.grpc_url, SPEC.name, {**request, "max_tokens": 10_000})
