"""Structured output on the tiny GPT-2 of conftest.py (random weights: nothing in it wants to
write JSON): every answer to a json_schema request parses and validates against its schema,
across 200 requests over 40 varied schemas (nested objects, enums, arrays, bounded numbers)
decoded 16 at a time beside free requests; json_object, regex and Lark grammars hold too; bad
constraints are 400s naming the field."""

from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest

from handlers.engines.batching import Failure
from handlers.engines.completions import LanguageModel
from handlers.engines.generating import Generating
from handlers.plan import Generation
from handlers.preprocessing.processing import RequestError
from tests.unit.handlers.conftest import drain

# the tiny model's context is 64 tokens, about as many characters: small schemas. Its config's
# end token (GPT-2's 50256) is outside its 300-token vocabulary: the spec names one
LIMITS = Generation(max_tokens=56, max_tokens_limit=60, context_length=64, end_token=0)


@pytest.fixture(scope="module")
def language(folder):
    return LanguageModel(folder, LIMITS, max_choices=16)


def schema(rng: random.Random, depth: int = 0) -> dict:
    """A small random JSON Schema: objects of enums, bounded integers, booleans, short strings,
    short arrays, and (once) a nested object."""
    kinds = ["enum", "integer", "boolean", "string", "array"] + (["object"] if depth < 1 else [])
    kind = rng.choice(kinds)
    if kind == "enum":
        return {"enum": rng.sample(["a", "bb", "c", "x", 3, True], 3)}
    if kind == "integer":
        low = rng.randint(-20, 5)
        return {"type": "integer", "minimum": low, "maximum": low + rng.randint(0, 30)}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "string":
        return {"type": "string", "maxLength": rng.randint(0, 4)}
    if kind == "array":
        return {"type": "array", "items": {"enum": [1, 2]}, "maxItems": rng.randint(0, 3)}
    return object_schema(rng, depth + 1)


def object_schema(rng: random.Random, depth: int = 0) -> dict:
    names = rng.sample(["a", "b", "c", "d"], rng.randint(1, 2))
    return {
        "type": "object",
        "properties": {name: schema(rng, depth) for name in names},
        "required": names,
        "additionalProperties": False,
    }


def answers(language: LanguageModel, bodies: list[dict]) -> list[dict]:
    generating = Generating(language, max_sequences=16, max_waiting=len(bodies))
    for key, body in enumerate(bodies):
        admitted = generating.admit(key, body)
        assert not isinstance(admitted, Failure), (body, admitted)
    pieces = drain(generating)
    return [
        {"text": pieces[key][-1].text, "finish_reason": pieces[key][-1].finish_reason}
        for key in range(len(bodies))
    ]


def test_every_json_schema_answer_parses_and_validates(language):
    rng = random.Random(0)
    schemas = [object_schema(rng) for _ in range(40)]
    bodies = [
        {
            "prompt": "the film",
            "temperature": 1.0,
            "seed": seed,
            "response_format": {"type": "json_schema", "json_schema": {"schema": s}},
        }
        for s in schemas
        for seed in range(5)
    ]
    free = [{"prompt": "the food", "max_tokens": 8}] * 8  # unconstrained, in the same batches
    got = answers(language, bodies + free)
    for body, answer in zip(bodies, got):
        schema_given = body["response_format"]["json_schema"]["schema"]
        assert answer["finish_reason"] == "stop", (schema_given, answer)
        jsonschema.validate(json.loads(answer["text"]), schema_given)
    assert all(answer["finish_reason"] == "length" for answer in got[len(bodies) :])


def test_json_object_regex_and_lark_grammars_hold(language):
    bodies = [
        {"prompt": "the", "response_format": {"type": "json_object"}, "max_tokens": 56},
        {"prompt": "the", "guided_regex": "[a-c]{2,4} [0-9]{3}", "temperature": 1.0, "seed": 3},
        {"prompt": "the", "structured_outputs": {"regex": "(yes|no)!"}, "temperature": 1.0},
        {
            "prompt": "the",
            "guided_grammar": 'start: "(" item ("," item)* ")"\nitem: "x" | "y"',
            "temperature": 1.0,
        },
    ]
    got = answers(language, bodies)
    obj, regex, choice, lark = (a["text"] for a in got)
    assert got[0]["finish_reason"] in ("stop", "length")
    if got[0]["finish_reason"] == "stop":
        assert isinstance(json.loads(obj), dict)
    assert re.fullmatch("[a-c]{2,4} [0-9]{3}", regex), regex
    assert choice in ("yes!", "no!")
    assert re.fullmatch(r"\((x|y)(,(x|y))*\)", lark) or got[3]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "body, message",
    [
        ({"response_format": {"type": "xml"}}, "response_format.type: 'xml' is not one of"),
        ({"response_format": {"type": "json_schema"}}, "expected a JSON Schema object"),
        ({"guided_regex": "(unclosed"}, "response_format: "),
        ({"guided_grammar": "start: missing_rule"}, "response_format: "),
        ({"guided_regex": "a", "guided_json": {"type": "object"}}, "give one constraint"),
        ({"structured_outputs": {"xml": "<a/>"}}, "structured_outputs.xml: not one of"),
        ({"guided_regex": "a" * 70_000}, "over 65536 characters"),
    ],
)
def test_bad_constraints_are_refused_by_name(language, body, message):
    with pytest.raises(RequestError) as error:
        language.read({"prompt": "the", **body})
    assert message in str(error.value)


def test_a_model_whose_end_token_is_outside_its_vocabulary_says_how_to_fix_it(folder):
    from tests.unit.handlers.conftest import LIMITS as NO_END_TOKEN

    language = LanguageModel(folder, NO_END_TOKEN)
    with pytest.raises(RequestError, match="end token .50256. is not in its vocabulary"):
        language.read({"prompt": "the", "response_format": {"type": "json_object"}})
