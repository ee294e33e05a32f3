"""Completion requests of a generation model: read, checked against the plan's limits, and the
pieces of their answers; runtime-neutral (both adapters and the build's verification use it).

A request is OpenAI's completion body (`prompt`, `max_tokens`, `temperature`, `top_p`, `top_k`,
`seed`, `stop`, `stream`); Triton's vLLM contract (`text_input`, `stream`,
`sampling_parameters`) is turned into the same fields by its adapter. Every mistake is a
RequestError naming the field and the limit, answered 400 before any token is made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.generation import Sampling
from handlers.plan import Generation
from handlers.processing import RequestError

SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop")
# `model` is what OpenAI's clients always send; the route has already chosen the model
FIELDS = ("prompt", "stream", "model", *SAMPLING_FIELDS)
MOST_STOP_STRINGS = 4  # OpenAI's limit
# numbers that Triton's vLLM backend also reads from strings in sampling_parameters (genai-perf
# sends {"max_tokens": "24"}): read the same here
VLLM_NUMBERS = {"max_tokens": int, "top_k": int, "seed": int, "temperature": float, "top_p": float}


def vllm_numbers(sampling: dict) -> dict:
    """sampling_parameters with numeric strings read as vLLM's backend reads them."""
    read = dict(sampling)
    for name, kind in VLLM_NUMBERS.items():
        if isinstance(read.get(name), str):
            try:
                read[name] = kind(read[name])
            except ValueError:
                raise RequestError(f"{name}: expected a number, got {read[name]!r}") from None
    return read


@dataclass(frozen=True)
class Completion:
    """One checked request: the prompt's token ids, how to sample, whether to stream."""

    prompt: str
    prompt_ids: list[int]
    sampling: Sampling
    stream: bool = False


@dataclass(frozen=True)
class Piece:
    """What one step made for one request: new text (maybe "" while held back), its token ids
    (the end token is not one), and on the last piece why it ended."""

    text: str
    token_ids: list[int]
    finish_reason: str | None = None

    @property
    def final(self) -> bool:
        return self.finish_reason is not None


class LanguageModel:
    """A Hugging Face folder (config.json, model.safetensors, tokenizer.json) loaded for
    serving: the causal LM, its tokenizer, its context length and end token. The weights stay
    views of the memory-mapped safetensors file (transformers loads them so), so every worker or
    instance serving the same file shares one copy in the page cache."""

    def __init__(self, folder: str | Path, limits: Generation, threads: int | None = None):
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a worker's log is not a terminal
        if threads:
            torch.set_num_threads(threads)
        folder = Path(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder).eval()
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = self.model.config
        self.context_length = limits.context_length or getattr(config, "n_positions", None)
        self.context_length = self.context_length or config.max_position_embeddings
        self.end_token = limits.end_token if limits.end_token is not None else config.eos_token_id
        self.limits = limits
        with torch.inference_mode():  # warm: the weights' pages read in now, not on a request
            self.model(input_ids=torch.tensor([[0]]))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def read(self, body: Any) -> Completion:
        """A completion request (JSON text, bytes or an already decoded dict) checked."""
        fields = parse_body(body)
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise RequestError(f"unknown field(s) {unknown}; a completion takes {list(FIELDS)}")
        prompt = fields.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise RequestError('prompt: give the text to continue, e.g. {"prompt": "The battery"}')
        stream = fields.get("stream", False)
        if not isinstance(stream, bool):
            raise RequestError("stream: expected true or false")
        sampling = self.sampling(fields)
        ids = self.encode(prompt)
        if len(ids) + sampling.max_tokens > self.context_length:
            raise RequestError(
                f"prompt: {len(ids)} tokens plus max_tokens {sampling.max_tokens} exceed the "
                f"model's context of {self.context_length} tokens; shorten the prompt or ask "
                "for fewer tokens"
            )
        return Completion(prompt, ids, sampling, stream)

    def sampling(self, fields: dict) -> Sampling:
        limits = self.limits
        max_tokens = number(fields, "max_tokens", limits.max_tokens, int)
        if not 1 <= max_tokens <= limits.max_tokens_limit:
            raise RequestError(
                f"max_tokens: {max_tokens} is outside 1..{limits.max_tokens_limit}, "
                "this model's limit"
            )
        temperature = number(fields, "temperature", limits.temperature, float)
        if temperature < 0:
            raise RequestError(f"temperature: {temperature} is negative; use 0 (greedy) or more")
        top_p = number(fields, "top_p", limits.top_p, float)
        if not 0 < top_p <= 1:
            raise RequestError(f"top_p: {top_p} is outside (0, 1]")
        top_k = number(fields, "top_k", limits.top_k, int)
        if top_k < 0:
            raise RequestError(f"top_k: {top_k} is negative; use 0 (every token) or more")
        seed = fields.get("seed")
        if seed is not None and (type(seed) is not int or seed < 0):
            raise RequestError(f"seed: expected a non-negative integer, got {seed!r}")
        return Sampling(max_tokens, temperature, top_k, top_p, seed, stop_strings(fields, limits))


def parse_body(body: Any) -> dict:
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(
                f"the body is not UTF-8 ({exc.reason} at byte {exc.start})", "decode"
            ) from None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise RequestError(f"the body is not JSON: {exc}", "decode") from None
    if not isinstance(body, dict):
        raise RequestError('expected a JSON object, e.g. {"prompt": "The battery"}')
    return body


def number(fields: dict, name: str, default, kind: type):
    value = fields.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name}: expected a number, got {value!r}")
    if kind is int and value != int(value):
        raise RequestError(f"{name}: expected a whole number, got {value!r}")
    return kind(value)


def stop_strings(fields: dict, limits: Generation) -> tuple[str, ...]:
    stop = fields.get("stop")
    if stop is None:
        return tuple(limits.stop)
    stop = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stop, list)
        or not all(isinstance(s, str) and s for s in stop)
        or len(stop) > MOST_STOP_STRINGS
    ):
        raise RequestError(f"stop: expected a string or up to {MOST_STOP_STRINGS} non-empty ones")
    return tuple(stop)


def completion_json(piece: Piece, stream: bool) -> str:
    """A streamed piece as one JSON line, or the whole answer of a request that did not
    stream (its one piece holds the whole text and every token id)."""
    answer = {
        "text": piece.text,
        "token_ids": piece.token_ids,
        "finish_reason": piece.finish_reason,
    }
    return json.dumps(answer) + ("\n" if stream else "")
