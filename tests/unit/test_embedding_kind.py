"""Task kind embedding, build side: what its spec section takes, `make verify`'s check of served
vectors against eager by cosine similarity (beside the element-wise one), and the rollout gate's
comparison of a candidate's vectors with the serving version's, on given vectors."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.measure.verify_served import Endpoints
from scripts.pipeline.layout import Layout
from scripts.rollout.gate import Gate, shadow_compare
from scripts.spec import SpecError, load_spec
from scripts.spec.versions import RolloutGate
from scripts.tasks import TASKS
from scripts.tasks.embedding import cosine_checks, cosine_similarities, shadow_cosine
from tests.conftest import TINY_ENTRY, ZOO_SPEC, write_spec

SPEC = next(m for m in load_spec(ZOO_SPEC).models if m.name == "zoo_text_embedder")
NAME = "sentence_embedding"
RNG = np.random.default_rng(0)
VECTORS = RNG.standard_normal((5, 64)).astype(np.float32)
INPUTS = {"input_ids": np.ones((5, 7), np.int64), "attention_mask": np.ones((5, 7), np.int64)}


def turned(vectors: np.ndarray, angle: float) -> np.ndarray:
    """Each vector turned by `angle` radians (towards a direction orthogonal to it)."""
    other = RNG.standard_normal(vectors.shape)
    other -= (other * vectors).sum(1, keepdims=True) / (vectors**2).sum(1, keepdims=True) * vectors
    other *= np.linalg.norm(vectors, axis=1, keepdims=True) / np.linalg.norm(other, axis=1)[:, None]
    return np.cos(angle) * vectors + np.sin(angle) * other


def test_cosine_similarities():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(cosine_similarities(a, b), [0.0, 1.0, 1.0, 0.0, -1.0])
    np.testing.assert_allclose(cosine_similarities(VECTORS, turned(VECTORS, 0.1)), np.cos(0.1))


# --- the spec -------------------------------------------------------------------------------


def entry(**replace: str) -> str:
    text = TINY_ENTRY.format(name="tiny", formats="torchscript, onnx")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


EMBEDDING = {"kind: classification": "kind: embedding\n      normalize: true"}


def test_an_embedding_entry_loads(tiny_spec):
    spec = load_spec(write_spec(tiny_spec.parent, entry(**EMBEDDING))).models[0]
    assert (spec.task.kind, spec.task.normalize, spec.task.cosine_similarity) == (
        "embedding",
        True,
        0.999,
    )
    assert spec.rollout.cosine_similarity == 0.99


@pytest.mark.parametrize(
    "replace, expected",
    [
        (
            {"kind: classification": "kind: classification\n      normalize: true"},
            "normalize: only kind embedding takes it, not classification",
        ),
        (
            {**EMBEDDING, "normalize: true": "embedding_output: logits"},
            "task.embedding_output: 'logits' is not an output (outputs: ['probability'])",
        ),
        (
            {**EMBEDDING, "max_batch_size: 8": "max_batch_size: 0"},
            "outputs: probability [-1, 1]: an embedding model answers one vector per example; "
            "give it shape [-1, dimensions] and batching.max_batch_size >= 1",
        ),
    ],
)
def test_what_an_embedding_entry_must_hold(tiny_spec, replace, expected):
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tiny_spec.parent, entry(**replace)))
    assert expected in str(error.value)


# --- make verify ----------------------------------------------------------------------------


def test_served_vectors_are_checked_by_direction(tmp_path):
    """A served vector at eager's direction passes even at another length (which the
    element-wise check beside it catches); one turned away fails naming the threshold; a
    failed call is a failed check with its reason."""
    layout = Layout.of(tmp_path)
    golden = layout.artifact(SPEC).golden
    golden.parent.mkdir(parents=True)
    np.savez(golden, **{f"input.{n}": a for n, a in INPUTS.items()}, **{f"output.{NAME}": VECTORS})

    def broken(spec, inputs):
        raise ConnectionError("refused")

    endpoints = {
        "longer": lambda spec, inputs: {NAME: VECTORS * 2},
        "turned": lambda spec, inputs: {NAME: turned(VECTORS, 0.1)},
        "broken": broken,
    }
    checks = {
        c.endpoint: c for c in cosine_checks(SPEC, layout, Endpoints(endpoints, lambda spec: {}))
    }
    longer, away, failed = checks.values()
    assert list(checks) == [f"{e} (cosine vs eager)" for e in endpoints]
    assert longer.passed and longer.samples == 5 and longer.max_abs_error > 1
    assert longer.detail == "min cosine similarity 1.0000000 (task.min_cosine_similarity 0.999)"
    assert not away.passed
    assert away.detail == "min cosine similarity 0.9950042 (task.min_cosine_similarity 0.999)"
    assert not failed.passed and failed.detail == "ConnectionError: refused"


# --- the rollout gate -----------------------------------------------------------------------


def shadow(candidate: np.ndarray, floor: float | None = None) -> Gate:
    spec = SPEC.model_copy(update={"rollout": RolloutGate(min_cosine_similarity=floor)})
    gate = Gate()
    shadow_compare(
        lambda spec, inputs: {NAME: VECTORS},
        lambda spec, inputs: {NAME: candidate},
        spec,
        [INPUTS, INPUTS],
        gate,
        shadow_cosine,
    )
    return gate


def test_the_gate_compares_vectors_with_the_serving_version_s():
    assert TASKS["embedding"].gate.keywords == {"kind_compare": shadow_cosine}
    close = shadow(turned(VECTORS, 0.05))
    assert close.passed, close.problems
    assert close.figures["min_cosine_similarity"] == pytest.approx(np.cos(0.05))
    away = shadow(turned(VECTORS, 0.5))
    assert away.problems == [
        "embeddings turn away from the serving version's: cosine similarity down to 0.8776 over "
        "10 inputs (rollout.min_cosine_similarity 0.99)"
    ]
    assert shadow(turned(VECTORS, 0.5), floor=0.8).passed  # a new space, knowingly let through
