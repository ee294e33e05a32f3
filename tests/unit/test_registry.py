"""Every model kind and every runtime has a test fixture: adding a kind or a runtime without
one fails here (as Hugging Face Optimum's exporter registry does)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from handlers.kinds import KINDS, Image, Raw, Standardize, Text
from handlers.processing import RequestError
from handlers.tensors import TensorSpec
from scripts.runtimes.registry import RUNTIMES

# kind -> (kind, its assets, the first input, a JSON value of one example, the rows expected from it)
KIND_FIXTURES = {
    "none": lambda tmp: (Raw(), {}, TensorSpec(name="x", dtype="float32", shape=[-1, 3]),
                         [1.0, 2.0, 3.0], np.array([[1.0, 2.0, 3.0]], np.float32)),
    "standardize": lambda tmp: (Standardize(kind="standardize", stats=write(tmp, "s.json", {"mean": [1, 1], "std": [2, 2]})),
                                {"mean": [1, 1], "std": [2, 2]}, TensorSpec(name="x", dtype="float32", shape=[-1, 2]),
                                [3.0, 5.0], np.array([[1.0, 2.0]], np.float32)),
    "image": lambda tmp: (Image(kind="image", height=4, width=4, grayscale=True, mean=0.5, std=0.5), {},
                          TensorSpec(name="image", dtype="float32", shape=[-1, 1, 4, 4]),
                          np.ones((4, 4)).tolist(), np.ones((1, 1, 4, 4), np.float32)),
    "text": lambda tmp: (Text(kind="text", vocab=write(tmp, "v.json", {"tokens": ["<pad>", "<unk>", "good", "film"]}),
                              max_length=4), {"tokens": ["<pad>", "<unk>", "good", "film"]},
                         TensorSpec(name="ids", dtype="int64", shape=[-1, 4], range=(0, 3)),
                         "Good film", np.array([[0, 0, 2, 3]], np.int64)),
}
# runtime -> the session fixture in tests/integration/conftest.py that serves the examples on it
RUNTIME_FIXTURES = {"torchserve": "torchserve", "triton": "triton"}


def write(folder: Path, name: str, content: dict) -> Path:
    (folder / name).write_text(json.dumps(content))
    return Path(name)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_has_a_fixture_and_decodes_json(name, tmp_path):
    assert name in KIND_FIXTURES, f"kind {name!r} has no test fixture: add one to KIND_FIXTURES"
    kind, assets, tensor, value, expected = KIND_FIXTURES[name](tmp_path)
    assert isinstance(kind, KINDS[name])
    assert kind.inline(tmp_path) == assets                     # the build inlines what run time reads
    assert all((tmp_path / p).exists() for p in kind.asset_files().values())
    kind.prepare(assets)
    rows, single = kind.from_json(value, tensor, 8)
    assert single and rows.dtype == tensor.numpy
    np.testing.assert_allclose(rows, expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_encoded_requests_round_trip_where_the_kind_has_an_ensemble(name, tmp_path):
    kind, assets, tensor, _, expected = KIND_FIXTURES[name](tmp_path)
    kind.prepare(assets)
    if kind.ensemble_input is None:
        with pytest.raises(RequestError):
            kind.decode(b"anything", tensor)
        return
    encoded = kind.encode(expected[0], assets)                 # what a client sends
    np.testing.assert_allclose(kind.decode(encoded, tensor), expected[0], atol=1 / 255 / 0.5)


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_every_runtime_has_an_integration_fixture(name):
    from tests.integration import conftest

    assert name in RUNTIME_FIXTURES, f"runtime {name!r} has no test fixture: add one to RUNTIME_FIXTURES"
    assert hasattr(conftest, RUNTIME_FIXTURES[name]), f"tests/integration/conftest.py has no {RUNTIME_FIXTURES[name]!r}"
