"""task: {kind: embedding}: one vector per example (the first output, or task.embedding_output),
answered beside the outputs as "embedding" (handlers/tasks.py). Verified as tensors, element-wise
against eager as every model is, and by direction, which is what an embedding is used for: each
served vector's cosine similarity with eager's must reach task.min_cosine_similarity (0.999 when
unset); a rollout's candidate version's with the serving version's on the same inputs must reach
rollout.min_cosine_similarity (0.99 when unset: a new embedding space needs a new index)."""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from scripts.measure.verify_served import Check, Endpoints, eager_answers, example_requests
from scripts.pipeline.layout import Layout
from scripts.rollout.gate import Gate, Inputs, run_gate
from scripts.spec import ModelSpec
from scripts.tasks.base import OnePass


def embedding_name(spec: ModelSpec) -> str:
    return spec.task.embedding_output or spec.outputs[0].name


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: a.b / (|a| |b|); two zero vectors are alike (1), a zero and another not (0)."""
    a, b = (np.asarray(x, np.float64).reshape(len(x), -1) for x in (a, b))
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = norm_a * norm_b
    cosine = np.einsum("ij,ij->i", a, b) / np.where(both == 0, 1.0, both)
    return np.where((norm_a == 0) & (norm_b == 0), 1.0, cosine)


def cosine_check(spec: ModelSpec, endpoint: str, served: np.ndarray, eager: np.ndarray) -> Check:
    """One endpoint's vectors against eager's for the same inputs, by direction."""
    cosine = cosine_similarities(served, eager)
    floor = spec.task.cosine_similarity
    worst = float(np.abs(np.asarray(served, np.float64) - eager).max())
    return Check(
        spec.name,
        f"{endpoint} (cosine vs eager)",
        len(cosine),
        worst,
        bool(cosine.min() >= floor),
        f"min cosine similarity {cosine.min():.7f} (task.min_cosine_similarity {floor:g})",
    )


def checked(spec: ModelSpec, endpoint: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:  # a refused or failed call is a failed check, with the reason
        name = f"{endpoint} (cosine vs eager)"
        return Check(spec.name, name, 0, float("inf"), False, f"{type(exc).__name__}: {exc}")


def cosine_checks(spec: ModelSpec, layout: Layout, endpoints: Endpoints) -> list[Check]:
    """The golden inputs through every tensor endpoint and the example requests (text) through
    every request endpoint, their vectors against eager PyTorch's (also where int8 is served:
    how far its vectors turn is the figure that matters)."""
    name = embedding_name(spec)
    with np.load(layout.artifact(spec).golden) as golden:
        inputs = {t.name: golden[f"input.{t.name}"] for t in spec.inputs}
        eager = golden[f"output.{name}"]
    checks = [
        checked(
            spec, e, lambda call=call, e=e: cosine_check(spec, e, call(spec, inputs)[name], eager)
        )
        for e, call in endpoints.tensors.items()
    ]
    requests = example_requests(spec, layout)
    if requests:
        want = np.stack([a[name] for a in eager_answers(spec, layout, requests, int8=False)])
        checks += [
            checked(
                spec,
                e,
                lambda call=call, e=e: cosine_check(
                    spec, e, np.stack([call(path)[name] for path in requests]), want
                ),
            )
            for e, call in endpoints.requests(spec).items()
        ]
    return checks


def shadow_cosine(spec: ModelSpec, pairs: list[tuple[Inputs, Inputs]], gate: Gate) -> None:
    """The gate's part of an embedding model: the candidate's vectors against the serving
    version's, input by input."""
    name = embedding_name(spec)
    cosine = np.concatenate([cosine_similarities(new[name], old[name]) for old, new in pairs])
    floor = spec.rollout.cosine_similarity
    gate.figures["min_cosine_similarity"] = float(cosine.min())
    if cosine.min() < floor:
        gate.problems.append(
            f"embeddings turn away from the serving version's: cosine similarity down to "
            f"{cosine.min():.4f} over {len(cosine)} inputs (rollout.min_cosine_similarity "
            f"{floor:g})"
        )


class Embedding(OnePass):
    name = "embedding"
    gate = staticmethod(partial(run_gate, kind_compare=shadow_cosine))

    def verify(self, spec: ModelSpec, layout: Layout, endpoints: Endpoints) -> list[Check]:
        """What every model is verified on (element-wise), then the vectors' directions."""
        return super().verify(spec, layout, endpoints) + cosine_checks(spec, layout, endpoints)
