"""An OpenAI completion request served by Triton, with tritonclient (gRPC `ModelStreamInfer`).

Triton 2.51 has no OpenAI route (its OpenAI frontend ships from 2.52 and needs in-process
bindings), so a client maps the request onto the model's tensors, vLLM's contract:

    OpenAI completions           Triton (this project's generation model)
    prompt                   ->  text_input (BYTES)
    stream                   ->  stream (BOOL; one response per token when true)
    max_tokens, temperature, ->  sampling_parameters (BYTES: those fields as one JSON object)
    top_p, top_k, seed, stop
    (continuation only)      ->  exclude_input_in_output = true
    choices[0].text          <-  text_output of each response, joined
    choices[0].finish_reason <-  finish_reason of the last response ("stop" / "length")
    usage.completion_tokens  <-  the number of token_ids over all responses

Run against `make serve`:  python docs/examples/openai_on_triton.py "This film" --stream
"""

from __future__ import annotations

import argparse
import json
import queue
import time
import uuid
from collections.abc import Iterator

import numpy as np
import tritonclient.grpc as grpcclient

SAMPLING = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop")


def triton_inputs(request: dict) -> list[grpcclient.InferInput]:
    """An OpenAI completion request as the model's input tensors."""
    sampling = {k: request[k] for k in SAMPLING if request.get(k) is not None}
    values = [
        ("text_input", request["prompt"].encode(), "BYTES"),
        ("stream", bool(request.get("stream")), "BOOL"),
        ("sampling_parameters", json.dumps(sampling).encode(), "BYTES"),
        ("exclude_input_in_output", True, "BOOL"),
    ]
    inputs = []
    for name, value, datatype in values:
        tensor = grpcclient.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(np.array([value], dtype=object if datatype == "BYTES" else bool))
        inputs.append(tensor)
    return inputs


def responses(url: str, model: str, request: dict) -> Iterator[tuple[dict, int]]:
    """Each Triton response as an OpenAI choice, with how many tokens it carries."""
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(model, triton_inputs(request))
        while True:
            result, error = answers.get(timeout=120)
            if error is not None:  # e.g. INVALID_ARG naming the field and the limit
                raise ValueError(error.message())
            reason = result.as_numpy("finish_reason").reshape(-1)[0].decode() or None
            text = result.as_numpy("text_output").reshape(-1)[0].decode()
            yield (
                {"index": 0, "text": text, "finish_reason": reason},
                len(result.as_numpy("token_ids").reshape(-1)),
            )
            if reason:
                return
    finally:
        client.stop_stream()
        client.close()


def envelope(model: str) -> dict:
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }


def complete(url: str, model: str, request: dict) -> dict | Iterator[dict]:
    """OpenAI's answer: its streamed chunks when `stream` is true, else one completion with
    usage."""
    head = envelope(model)
    if request.get("stream"):
        return ({**head, "choices": [choice]} for choice, _ in responses(url, model, request))
    parts = list(responses(url, model, request))
    text = "".join(choice["text"] for choice, _ in parts)
    return {
        **head,
        "choices": [{"index": 0, "text": text, "finish_reason": parts[-1][0]["finish_reason"]}],
        "usage": {"completion_tokens": sum(tokens for _, tokens in parts)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton's gRPC address")
    parser.add_argument("--model", default="review_gpt")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    request = {"prompt": args.prompt, "max_tokens": args.max_tokens, "stream": args.stream}
    answer = complete(args.url, args.model, request)
    if args.stream:
        for chunk in answer:
            print(chunk["choices"][0]["text"], end="", flush=True)
        print()
    else:
        print(json.dumps(answer, indent=2))


if __name__ == "__main__":
    main()
