"""Structured output, runtime-neutral: a request's `response_format` (OpenAI's `json_object` and
`json_schema`) or vLLM's `guided_json` / `guided_regex` / `guided_grammar` (Lark) held token
by token by llguidance. Each constrained sequence has its own matcher; at every step its row of
logits keeps only the tokens the grammar allows, so constrained and free sequences decode in
the same batched forward and only the rows that asked are masked.

llguidance over xgrammar and outlines-core, measured on review_gpt's and GPT-2's tokenizers
(200 random walks per library over nested, enum, bounded-number and regex schemas): it was the
only one whose every output parsed and validated (xgrammar let control bytes into strings with
maxLength; outlines-core ignores number bounds and takes 5 s to compile json_object), it
compiles a schema in about 1 ms, and a mask costs 10-30 us, small beside applying it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

import torch

from handlers.preprocessing.processing import RequestError

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

MAX_GRAMMAR_CHARS = 64 * 1024  # a schema, regex or grammar as sent: bounded before compiling
COMPILED_KEPT = 64  # grammars kept compiled (a template matcher each), least recently used out
BITS = torch.arange(32, dtype=torch.int32)
COMPACT: JsonCompileOptions = {"whitespace_flexible": False}  # no free-running whitespace


def json_object_grammar(_: Any) -> str:
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_json_schema({"type": "object"}, defaults=COMPACT)


def json_schema_grammar(schema: Any) -> str:
    from llguidance import LLMatcher

    if not isinstance(schema, dict):
        raise RequestError("response_format.json_schema.schema: expected a JSON Schema object")
    try:
        return LLMatcher.grammar_from_json_schema(cast("dict[str, Any]", schema), defaults=COMPACT)
    except ValueError as exc:
        raise RequestError(f"response_format.json_schema.schema: {exc}") from None


def regex_grammar(regex: Any) -> str:
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_regex(text_of(regex, "regex"))


def lark_grammar(lark: Any) -> str:
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_lark(text_of(lark, "grammar"))


def text_of(value: Any, kind: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{kind}: expected the {kind} as text")
    return value


# a constraint's kind -> llguidance's grammar for its value (malformed ones are refused by name
# when compiled)
GRAMMARS: dict[str, Callable[[Any], str]] = {
    "json_object": json_object_grammar,
    "json_schema": json_schema_grammar,
    "regex": regex_grammar,
    "grammar": lark_grammar,
}
# response_format's type -> the value of its constraint (text: none)
RESPONSE_FORMATS: dict[str, Callable[[dict[str, Any]], tuple[str, Any] | None]] = {
    "text": lambda _: None,
    "json_object": lambda _: ("json_object", None),
    "json_schema": lambda given: ("json_schema", schema_of(given.get("json_schema"))),
}
GUIDED = {"guided_json": "json_schema", "guided_regex": "regex", "guided_grammar": "grammar"}
STRUCTURED_OUTPUTS = {"json": "json_schema", "regex": "regex", "grammar": "grammar"}


class Grammars:
    """The model's tokenizer as llguidance sees it (made on the first constrained request: on
    a large vocabulary it takes seconds) and compiled grammars, least recently used out."""

    def __init__(self, tokenizer_file: Path, vocabulary: int, end_token: int | None):
        self.tokenizer_file, self.vocabulary, self.end_token = tokenizer_file, vocabulary, end_token
        self.lock = threading.Lock()  # requests are read on the runtime's threads
        self.tokenizer: Any = None
        self.compiled: OrderedDict[str, Any] = OrderedDict()

    def check(self, grammar: str) -> None:
        """Compile now (on the request's thread), so a bad grammar is the request's 400."""
        self.template(grammar)

    def template(self, grammar: str) -> Any:
        from llguidance import LLMatcher, LLTokenizer

        with self.lock:
            if grammar in self.compiled:
                self.compiled.move_to_end(grammar)
                return self.compiled[grammar]
            if self.end_token is None or not 0 <= self.end_token < self.vocabulary:
                raise RequestError(
                    f"response_format: this model's end token ({self.end_token}) is not in its "
                    f"vocabulary of {self.vocabulary}, so a structured answer could not end; "
                    "set task.generation.end_token in the spec"
                )
            if self.tokenizer is None:
                self.tokenizer = LLTokenizer(
                    str(self.tokenizer_file), n_vocab=self.vocabulary, eos_token=self.end_token
                )
        matcher = LLMatcher(self.tokenizer, grammar, log_level=0)  # drops the GIL meanwhile
        if matcher.is_error():
            raise RequestError(f"response_format: {matcher.get_error()[:500]}")
        with self.lock:
            self.compiled[grammar] = matcher
            if len(self.compiled) > COMPILED_KEPT:
                self.compiled.popitem(last=False)
        return matcher

    def matcher(self, grammar: str) -> Matcher:
        return Matcher(self.template(grammar).deep_copy(), self.vocabulary)


class Matcher:
    """One sequence's place in its grammar."""

    def __init__(self, matcher: Any, vocabulary: int):
        self.matcher = matcher
        self.bitmask = torch.zeros(1, (vocabulary + 31) // 32, dtype=torch.int32)

    def masked(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits with every token the grammar does not allow next at -inf."""
        # what llguidance.torch.fill_next_token_bitmask does, without importing that module:
        # its torch.compile decorator costs the first constrained request 2.3 s of imports
        row = self.bitmask[0]
        self.matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())
        allowed = ((self.bitmask[0].unsqueeze(-1) >> BITS) & 1).view(-1)[: logits.numel()]
        return logits.float().masked_fill(allowed == 0, float("-inf"))

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"the grammar refused token {token}: {self.matcher.get_error()}")

    @property
    def complete(self) -> bool:
        """Nothing may follow: the answer is whole."""
        return bool(self.matcher.is_stopped())


def requested(
    response_format: dict[str, Any] | None,
    guided: dict[str, Any],
    structured_outputs: dict[str, Any] | None,
) -> str | None:
    """The grammar text of the one constraint a request gives (None: free text): OpenAI's
    response_format, vLLM's older guided_json/_regex/_grammar or its structured_outputs."""
    asked: list[tuple[str, Any]] = []
    if response_format is not None:
        kind = str(response_format.get("type"))
        if kind not in RESPONSE_FORMATS:
            raise RequestError(
                f"response_format.type: {kind[:40]!r} is not one of {', '.join(RESPONSE_FORMATS)}"
            )
        asked += [c for c in (RESPONSE_FORMATS[kind](response_format),) if c is not None]
    asked += [(GUIDED[name], value) for name, value in guided.items() if value is not None]
    for name, value in (structured_outputs or {}).items():
        if name == "json_object" and value is True:
            asked.append(("json_object", None))
        elif name in STRUCTURED_OUTPUTS:
            asked.append((STRUCTURED_OUTPUTS[name], value))
        else:
            raise RequestError(
                f"structured_outputs.{str(name)[:40]}: not one of json, regex, grammar, json_object"
            )
    if len(asked) > 1:
        raise RequestError(
            "response_format: give one constraint (response_format, guided_json, guided_regex, "
            f"guided_grammar or structured_outputs), not {len(asked)}"
        )
    if not asked:
        return None
    kind, value = asked[0]
    if len(value if isinstance(value, str) else json.dumps(value)) > MAX_GRAMMAR_CHARS:
        raise RequestError(
            f"{kind}: over {MAX_GRAMMAR_CHARS} characters; send a smaller constraint", "size"
        )
    return GRAMMARS[kind](value)


def schema_of(json_schema: object) -> Any:
    """response_format.json_schema's schema (None: not given)."""
    if not isinstance(json_schema, dict):
        return None
    return cast("dict[str, Any]", json_schema).get("schema")
