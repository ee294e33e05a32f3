"""Completion requests of a generation model: read, checked against the plan's limits, and the
pieces of their answers; runtime-neutral (both adapters and the build's verification use it).

A request is OpenAI's completion body (`prompt`, `max_tokens`, `temperature`, `top_p`, `top_k`,
`seed`, `stop`, `stream`, `n`, `logprobs`, the penalties, `logit_bias`; `prompt_logprobs` for
echo), in vLLM's ranges; Triton's vLLM contract (`text_input`, `stream`,
`sampling_parameters`) is turned into the same fields by its adapter. Every mistake is a
RequestError naming the field and the limit, answered 400 before any token is made.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from handlers.engines.sampling import Sampling, TokenLogprobs
from handlers.engines.scheduling import measured_pace, padding_worth_a_forward
from handlers.engines.speculative import DRAFT_FOLDER
from handlers.engines.structured import Grammars, requested
from handlers.formats import folder_format
from handlers.formats.pretrained import Pretrained
from handlers.plan import Draft, Generation
from handlers.preprocessing.processing import RequestError, unicode_text

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache

SAMPLING_FIELDS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "logprobs",
    "prompt_logprobs",
    "response_format",
    "guided_json",
    "guided_regex",
    "guided_grammar",
    "structured_outputs",
)
# `model` is what OpenAI's clients always send; the route has already chosen the model
FIELDS = ("prompt", "stream", "model", "n", "priority", *SAMPLING_FIELDS)
MAX_LOGPROBS = 20  # top log-probabilities a token may come with (vLLM's max_logprobs)
MAX_PENALTY = 2.0  # presence and frequency penalties lie in [-2, 2] (OpenAI's and vLLM's range)
REPETITION_PENALTY = (0.01, 100.0)  # beyond, a seen token's logit over- or underflows
MAX_LOGIT_BIAS = 100.0  # a bias lies in [-100, 100] (OpenAI's range)
MAX_PRIORITY = 2**31  # a request's priority, as a 32-bit int
MAX_LOGIT_BIASES = 1024  # entries of logit_bias: each is applied at every step
# below this a temperature overflows softmax(logits / t) in float32: 0 is greedy, or >= this
MIN_TEMPERATURE = 1e-2
MAX_SEED = 2**63 - 1  # torch.Generator's seeds are 64-bit; a Python int beyond them raises
MAX_MODEL_NAME = 256  # `model` is echoed in OpenAI's answers: never a megabyte of it
PRETRAINED = folder_format("pretrained")
PROMPT_BYTES_PER_TOKEN = 32  # the default byte cap on a prompt: this much per context token
# numbers that Triton's vLLM backend also reads from strings in sampling_parameters (genai-perf
# sends {"max_tokens": "24"}): read the same here
T = TypeVar("T")
VLLM_NUMBERS = {"max_tokens": int, "top_k": int, "seed": int, "temperature": float, "top_p": float}


def vllm_numbers(sampling: dict[str, Any]) -> dict[str, Any]:
    """sampling_parameters with numeric strings read as vLLM's backend reads them."""
    read = dict(sampling)
    for name, kind in VLLM_NUMBERS.items():
        if isinstance(read.get(name), str) and len(read[name]) <= 64:
            try:
                read[name] = kind(read[name])
            except ValueError:
                raise RequestError(f"{name}: expected a number, got {read[name]!r}") from None
    return read


def whole_number(value: Any) -> Any:
    """16.0 is 16 (JSON clients write numbers as floats); 16.5 and Infinity are refused."""
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)
    return value


Text = Annotated[str, AfterValidator(unicode_text)]
Whole = Annotated[int, BeforeValidator(whole_number)]


class CompletionFields(BaseModel):
    """A completion request's fields, typed: strict JSON types, finite numbers only (NaN and
    Infinity refused by name), valid Unicode. The model's own limits are LanguageModel's."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    prompt: Text
    stream: bool = False
    model: Annotated[str, Field(max_length=MAX_MODEL_NAME), AfterValidator(unicode_text)] | None = (
        None
    )
    max_tokens: Whole | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: Whole | None = None
    seed: Whole | None = None
    stop: Text | list[Text] | None = None
    n: Whole = 1
    priority: Whole = 0  # lower joins first (vLLM's priority scheduling)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[str, float] | None = None  # token id (as JSON keys are text) -> bias
    logprobs: Whole | None = None  # the top tokens to show beside each new token's
    prompt_logprobs: Whole | None = None  # the same for the prompt's tokens
    # structured output (handlers/engines/structured.py): one of these
    response_format: dict[str, Any] | None = None
    guided_json: dict[str, Any] | None = None
    guided_regex: Text | None = None
    guided_grammar: Text | None = None
    structured_outputs: dict[str, Any] | None = None

    @classmethod
    def read(cls, fields: dict[str, Any]) -> CompletionFields:
        unknown = sorted(str(name)[:64] for name in set(fields) - set(FIELDS))
        if unknown:
            raise RequestError(f"unknown field(s) {unknown}; a completion takes {list(FIELDS)}")
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise RequestError(field_error(exc)) from None


def field_error(exc: ValidationError) -> str:
    """The first problem as `field: what is wrong, got <value>` (the value cut short)."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "body"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"].startswith(("finite_number", "int_", "float_", "bool_", "string_")):
        got = repr(error.get("input"))
        message += f", got {got[:40]}{'...' if len(got) > 40 else ''}"
    return f"{name}: {message}"


@dataclass(frozen=True)
class Completion:
    """One checked request: the prompt's token ids, how to sample, whether to stream."""

    prompt: str
    prompt_ids: list[int]
    sampling: Sampling
    stream: bool = False
    n: int = 1  # sequences decoded for it, each its own choice (seeded seed, seed + 1, ...)
    priority: int = 0  # lower joins the batch first


@dataclass(frozen=True)
class Logprob:
    """A token's log-probability as answers show it: the token's text, and the most likely
    tokens' (text, log-probability) at its position."""

    token: str
    logprob: float | None  # None: the prompt's first token (nothing came before it)
    top: tuple[tuple[str, float], ...] = ()
    # the ids behind the texts, and the token's rank (for vLLM's tensor contract)
    token_id: int | None = None
    top_ids: tuple[int, ...] = ()
    rank: int | None = None


@dataclass(frozen=True)
class Piece:
    """What one step made for one choice of a request: new text (maybe "" while held back), its
    token ids (the end token is not one) with their log-probabilities when asked for, and on
    the choice's last piece why it ended."""

    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    error: str | None = None  # finish_reason "error": why this request failed (ours: a 500)
    index: int = 0  # which of the request's n choices
    logprobs: tuple[Logprob, ...] = ()
    prompt_logprobs: tuple[Logprob, ...] = ()  # on a choice's first piece, for echo

    @property
    def final(self) -> bool:
        """This choice ended (the request ends with its last choice)."""
        return self.finish_reason is not None


def weight_bytes(model: torch.nn.Module) -> int:
    """What one forward reads of weights: the parameters (tied ones once), and the packed
    weights of int8 layers, which are no parameters."""
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    packed: list[torch.Tensor] = [m.weight() for m in model.modules() if isinstance(m, Int8Linear)]
    return sum(p.numel() * p.element_size() for p in [*model.parameters(), *packed])


def kv_bytes(cache: DynamicCache) -> int:
    """The bytes of a cache's keys and values (of one position: one token's)."""
    from handlers.engines.kv_cache import kv_layers

    return sum(
        t.numel() * t.element_size()
        for layer in kv_layers(cache)
        for t in (layer.keys, layer.values)
    )


class LanguageModel:
    """A Hugging Face folder (config.json, model.safetensors, tokenizer.json) loaded for
    serving: the causal LM, its tokenizer, its context length and end token. The weights stay
    views of the memory-mapped safetensors file (transformers loads them so), so every worker or
    instance serving the same file shares one copy in the page cache."""

    def __init__(
        self,
        folder: str | Path,
        limits: Generation,
        threads: int | None = None,
        max_choices: int = 1,
        form: Pretrained = PRETRAINED,
    ):
        import torch
        from tokenizers import Tokenizer

        if threads:
            torch.set_num_threads(threads)
        folder = Path(folder)
        self.model = form.load_causal_lm(folder)  # fp32, or int8 (handlers/formats)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = self.model.config
        context_length = limits.context_length or getattr(config, "n_positions", None)
        self.context_length: int = context_length or config.max_position_embeddings
        self.end_token = limits.end_token if limits.end_token is not None else config.eos_token_id
        self.limits = limits
        self.vocabulary = config.vocab_size
        self.max_choices = max_choices  # a request's n: its sequences decode together
        self.grammars = Grammars(folder / "tokenizer.json", self.vocabulary, self.end_token)
        with torch.inference_mode():  # warm: the weights' pages read in now, not on a request
            warm = self.model(input_ids=torch.tensor([[0]]), use_cache=True)
        self.max_padding = padding_worth_a_forward(weight_bytes(self.model), kv_bytes(warm.cache))
        self.pace = measured_pace(self.model)  # how many prompt tokens a step may prefill
        self.draft = self.load_draft(folder / DRAFT_FOLDER, limits.draft)

    def load_draft(self, folder: Path, draft: Draft | None) -> torch.nn.Module | None:
        """The draft model speculative decoding proposes with (its folder inside this one,
        in its own served format), when the plan names one; it must share the vocabulary."""
        import torch

        if draft is None:
            return None
        model = folder_format(draft.format or "pretrained").load_causal_lm(folder)
        if model.config.vocab_size != self.vocabulary:
            raise ValueError(
                f"the draft (version {draft.version}) has a vocabulary of "
                f"{model.config.vocab_size} tokens, this model {self.vocabulary}: a draft must "
                "be a version with the same tokenizer"
            )
        with torch.inference_mode():
            model(input_ids=torch.tensor([[0]]), use_cache=True)  # warm, as the model
        return model

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    @property
    def max_prompt_bytes(self) -> int:
        return self.limits.max_prompt_bytes or PROMPT_BYTES_PER_TOKEN * self.context_length

    def read(self, body: Any) -> Completion:
        """A completion request (JSON text, bytes or an already decoded dict) checked; the
        prompt's size is checked before it is tokenized, so a huge one costs nothing."""
        fields = CompletionFields.read(parse_body(body))
        if not fields.prompt:
            raise RequestError('prompt: give the text to continue, e.g. {"prompt": "The battery"}')
        size = len(fields.prompt.encode("utf-8"))
        if size > self.max_prompt_bytes:
            raise RequestError(
                f"prompt: {size} bytes is over this model's limit of {self.max_prompt_bytes} "
                "(task.generation.max_prompt_bytes); shorten the prompt",
                "size",
            )
        sampling = self.sampling(fields)
        ids = self.encode(fields.prompt)
        if len(ids) + sampling.max_tokens > self.context_length:
            raise RequestError(
                f"prompt: {len(ids)} tokens plus max_tokens {sampling.max_tokens} exceed the "
                f"model's context of {self.context_length} tokens; shorten the prompt or ask "
                "for fewer tokens",
                "size",
            )
        if not 1 <= fields.n <= self.max_choices:
            raise RequestError(
                f"n: {fields.n} is outside 1..{self.max_choices} (the sequences this model "
                "decodes together, batching.max_batch_size)",
                "range",
            )
        if fields.n > 1 and sampling.greedy:
            raise RequestError(
                f"n: {fields.n} greedy choices would all be the same; give a temperature "
                "(e.g. 0.8) or n: 1",
                "range",
            )
        if not -MAX_PRIORITY <= fields.priority <= MAX_PRIORITY:
            raise RequestError(
                f"priority: {fields.priority} is outside -{MAX_PRIORITY}..{MAX_PRIORITY}", "range"
            )
        return Completion(fields.prompt, ids, sampling, fields.stream, fields.n, fields.priority)

    def logprob(self, scored: TokenLogprobs) -> Logprob:
        """Token ids as text, for an answer."""
        top = tuple((self.decode([token]), value) for token, value in scored.top)
        ids = tuple(token for token, _ in scored.top)
        return Logprob(
            self.decode([scored.token]), scored.logprob, top, scored.token, ids, scored.rank
        )

    def sampling(self, fields: CompletionFields) -> Sampling:
        """The request's sampling within this model's limits, each refusal naming its field."""
        limits = self.limits
        max_tokens = pick_default(fields.max_tokens, limits.max_tokens)
        if not 1 <= max_tokens <= limits.max_tokens_limit:
            raise RequestError(
                f"max_tokens: {max_tokens} is outside 1..{limits.max_tokens_limit}, "
                "this model's limit",
                "range",
            )
        temperature = pick_default(fields.temperature, limits.temperature)
        if temperature != 0 and not temperature >= MIN_TEMPERATURE:
            raise RequestError(
                f"temperature: {temperature!r} is outside 0 (greedy) or {MIN_TEMPERATURE} and more",
                "range",
            )
        top_p = pick_default(fields.top_p, limits.top_p)
        if not 0 < top_p <= 1:
            raise RequestError(f"top_p: {top_p!r} is outside (0, 1]", "range")
        top_k = pick_default(fields.top_k, limits.top_k)
        if not 0 <= top_k <= self.vocabulary:
            raise RequestError(
                f"top_k: {top_k} is outside 0 (every token)..{self.vocabulary} (the vocabulary)",
                "range",
            )
        if fields.seed is not None and not 0 <= fields.seed <= MAX_SEED:
            raise RequestError(f"seed: {fields.seed} is outside 0..{MAX_SEED}", "range")
        stop = stop_strings(fields.stop, limits)
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(fields, name)
            if value is not None and not 0 <= value <= MAX_LOGPROBS:
                raise RequestError(f"{name}: {value} is outside 0..{MAX_LOGPROBS}", "range")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(fields, name)
            if value is not None and not -MAX_PENALTY <= value <= MAX_PENALTY:
                raise RequestError(
                    f"{name}: {value!r} is outside -{MAX_PENALTY}..{MAX_PENALTY}", "range"
                )
        low, high = REPETITION_PENALTY
        repetition = pick_default(fields.repetition_penalty, 1.0)
        if not low <= repetition <= high:
            raise RequestError(
                f"repetition_penalty: {repetition!r} is outside {low}..{high} (1: none)", "range"
            )
        return Sampling(
            max_tokens,
            temperature,
            top_k,
            top_p,
            fields.seed,
            stop,
            presence_penalty=fields.presence_penalty or 0.0,
            frequency_penalty=fields.frequency_penalty or 0.0,
            repetition_penalty=repetition,
            logit_bias=self.logit_bias(fields.logit_bias or {}),
            logprobs=fields.logprobs,
            prompt_logprobs=fields.prompt_logprobs,
            grammar=self.grammar(fields),
        )

    def grammar(self, fields: CompletionFields) -> str | None:
        """The request's constraint compiled now, so a bad one is its own 400."""
        guided = {
            "guided_json": fields.guided_json,
            "guided_regex": fields.guided_regex,
            "guided_grammar": fields.guided_grammar,
        }
        grammar = requested(fields.response_format, guided, fields.structured_outputs)
        if grammar is not None:
            self.grammars.check(grammar)
        return grammar

    def logit_bias(self, given: dict[str, float]) -> tuple[tuple[int, float], ...]:
        """logit_bias's entries as (token id, bias), each id in the vocabulary."""
        if len(given) > MAX_LOGIT_BIASES:
            raise RequestError(
                f"logit_bias: {len(given)} entries is over the limit of {MAX_LOGIT_BIASES}", "size"
            )
        biases: list[tuple[int, float]] = []
        for key, bias in given.items():
            token = int(key) if key.isascii() and key.isdigit() and len(key) <= 12 else -1
            if not 0 <= token < self.vocabulary:
                raise RequestError(
                    f"logit_bias: key {key[:20]!r} is not a token id in 0..{self.vocabulary - 1}"
                )
            if not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:
                raise RequestError(
                    f"logit_bias[{key}]: {bias!r} is outside -{MAX_LOGIT_BIAS}..{MAX_LOGIT_BIAS}",
                    "range",
                )
            biases.append((token, bias))
        return tuple(biases)


def pick_default(value: T | None, default: T) -> T:
    return default if value is None else value


def parse_body(body: Any) -> dict[str, Any]:
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
        except RecursionError:
            raise RequestError("the body is JSON nested too deeply", "decode") from None
        except ValueError as exc:
            raise RequestError(f"the body is not JSON: {exc}", "decode") from None
    if not isinstance(body, dict):
        raise RequestError(
            'expected a JSON object, e.g. {"prompt": "The battery"}, sent as JSON '
            '(Content-Type: application/json: curl -d without -H "Content-Type: '
            'application/json" sends a form)'
        )
    return cast("dict[str, Any]", body)  # a JSON object's keys are strings


def stop_strings(stop: str | list[str] | None, limits: Generation) -> tuple[str, ...]:
    """The request's stop strings (else the model's), bounded in count and length: the
    decode loop looks for each after every token of every sequence."""
    if stop is None:
        return tuple(limits.stop)
    stop = [stop] if isinstance(stop, str) else stop
    if len(stop) > limits.max_stop_strings:
        raise RequestError(
            f"stop: {len(stop)} strings is over this model's limit of {limits.max_stop_strings}",
            "size",
        )
    for i, text in enumerate(stop):
        if not text or len(text) > limits.max_stop_chars:
            raise RequestError(
                f"stop[{i}]: {len(text)} characters is outside 1..{limits.max_stop_chars} "
                "(task.generation.max_stop_chars)",
                "size",
            )
    return tuple(stop)
