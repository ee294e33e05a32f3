"""Every model kind and every runtime has a test fixture: adding a kind or a runtime without
one fails here (as Hugging Face Optimum's exporter registry does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from handlers.preprocessing.kinds import KINDS, Image, Raw, Standardize, Text, Tokenized
from handlers.preprocessing.processing import RequestError
from handlers.preprocessing.tensors import TensorSpec
from scripts.runtimes.registry import RUNTIMES

# kind -> (kind, its assets, the model inputs, a JSON value of one example, the rows expected
# from it)
KIND_FIXTURES = {
    "none": lambda tmp: (
        Raw(),
        {},
        [TensorSpec(name="x", dtype="float32", shape=[-1, 3])],
        [1.0, 2.0, 3.0],
        {"x": np.array([[1.0, 2.0, 3.0]], np.float32)},
    ),
    "standardize": lambda tmp: (
        Standardize(
            kind="standardize", stats=write(tmp, "s.json", {"mean": [1, 1], "std": [2, 2]})
        ),
        {"mean": [1, 1], "std": [2, 2]},
        [TensorSpec(name="x", dtype="float32", shape=[-1, 2])],
        [3.0, 5.0],
        {"x": np.array([[1.0, 2.0]], np.float32)},
    ),
    "image": lambda tmp: (
        Image(kind="image", height=4, width=4, grayscale=True, mean=0.5, std=0.5),
        {},
        [TensorSpec(name="image", dtype="float32", shape=[-1, 1, 4, 4])],
        np.ones((4, 4)).tolist(),
        {"image": np.ones((1, 1, 4, 4), np.float32)},
    ),
    "text": lambda tmp: (
        Text(
            kind="text",
            vocab=write(tmp, "v.json", {"tokens": ["<pad>", "<unk>", "good", "film"]}),
            max_length=4,
        ),
        {"tokens": ["<pad>", "<unk>", "good", "film"]},
        [TensorSpec(name="ids", dtype="int64", shape=[-1, 4], range=(0, 3))],
        "Good film",
        {"ids": np.array([[0, 0, 2, 3]], np.int64)},
    ),
    "tokenizer": lambda tmp: (
        Tokenized(kind="tokenizer", tokenizer=word_tokenizer(tmp), max_length=8),
        {"tokenizer": (tmp / "tokenizer.json").read_text()},
        [
            TensorSpec(name="input_ids", dtype="int64", shape=[-1, -1]),
            TensorSpec(name="attention_mask", dtype="int64", shape=[-1, -1]),
        ],
        "Good film",
        {"input_ids": np.array([[2, 3]]), "attention_mask": np.array([[1, 1]])},
    ),
}
# runtime -> the session fixture in tests/integration/conftest.py that serves the examples on it
RUNTIME_FIXTURES = {"torchserve": "torchserve", "triton": "triton"}


def word_tokenizer(folder: Path) -> Path:
    """A four-word tokenizer.json (the `tokenizers` library's own format)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(
        models.WordLevel({"[PAD]": 0, "[UNK]": 1, "good": 2, "film": 3}, unk_token="[UNK]")
    )
    tokenizer.normalizer, tokenizer.pre_tokenizer = (
        normalizers.Lowercase(),
        pre_tokenizers.Whitespace(),
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    return Path("tokenizer.json")


def write(folder: Path, name: str, content: dict) -> Path:
    (folder / name).write_text(json.dumps(content))
    return Path(name)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_has_a_fixture_and_decodes_json(name, tmp_path):
    assert name in KIND_FIXTURES, f"kind {name!r} has no test fixture: add one to KIND_FIXTURES"
    kind, assets, inputs, value, expected = KIND_FIXTURES[name](tmp_path)
    assert isinstance(kind, KINDS[name])
    assert kind.inline(tmp_path) == assets  # the build inlines what run time reads
    assert all((tmp_path / p).exists() for p in kind.asset_files().values())
    kind.prepare(assets)
    rows, single = kind.json_inputs(value, inputs, 8)
    assert single and sorted(rows) == sorted(expected)
    for t in kind.produces(inputs):
        assert rows[t.name].dtype == t.numpy
        np.testing.assert_allclose(rows[t.name], expected[t.name], atol=1e-6)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_encoded_requests_round_trip_where_the_kind_has_an_ensemble(name, tmp_path):
    kind, assets, inputs, _, expected = KIND_FIXTURES[name](tmp_path)
    kind.prepare(assets)
    if kind.ensemble_input is None:
        with pytest.raises(RequestError):
            kind.decode_items([b"anything"], inputs, 8)
        return
    first = inputs[0].name
    encoded = kind.encode(expected[first][0], assets)  # what a client sends
    decoded = kind.decode_items([encoded], inputs, 8)
    for name, rows in expected.items():
        np.testing.assert_allclose(decoded[name], rows, atol=1 / 255 / 0.5)


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_every_runtime_has_an_integration_fixture(name):
    from tests.integration import conftest

    assert name in RUNTIME_FIXTURES, (
        f"runtime {name!r} has no test fixture: add one to RUNTIME_FIXTURES"
    )
    assert hasattr(conftest, RUNTIME_FIXTURES[name]), (
        f"tests/integration/conftest.py has no {RUNTIME_FIXTURES[name]!r}"
    )
