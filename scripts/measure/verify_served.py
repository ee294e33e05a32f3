"""Step `verify`: every served endpoint answers what the trained model answers.

Golden samples (model-input tensors and eager outputs, saved by `export`) go through TorchServe
REST and gRPC and Triton HTTP and gRPC; the example requests (image bytes, sentences, rows) go
through TorchServe and Triton's ensembles and are compared with eager PyTorch on the same
pre-processing. TorchServe and Triton are also compared with each other. Writes
reports/verify.json; any failure fails the step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from handlers.formats import FORMATS
from handlers.preprocessing.pipeline import Pipeline
from handlers.preprocessing.processing import class_scores
from handlers.runners import load_runner, torch_runner
from scripts.pipeline.layout import Layout
from scripts.pipeline.loading import load_reference
from scripts.pipeline.plan import serving_plan
from scripts.pipeline.verify import compare
from scripts.runtimes.calls import GenerateCall, RequestCall, TensorCall
from scripts.runtimes.protocols import GatewayPass, Server
from scripts.runtimes.registry import attached
from scripts.spec import ModelSpec, Tolerance

CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".txt": "text/plain",
    ".json": "application/json",
}


@dataclass
class Check:
    model: str
    endpoint: str
    samples: int
    max_abs_error: float
    passed: bool
    detail: str = ""


@dataclass
class Endpoints:
    """Every served endpoint, collected from each runtime plugin's running server."""

    tensors: dict[str, TensorCall]  # name -> golden tensors in, outputs out
    requests: Callable[[ModelSpec], dict[str, RequestCall]]  # per model: name -> request file in
    generation: Callable[[ModelSpec], dict[str, GenerateCall]] = lambda spec: {}


def endpoints_for(servers: Mapping[str, Server], passage: GatewayPass | None = None) -> Endpoints:
    """From {runtime name: running server} (scripts.runtimes.serving.serving()); with
    `passage`, each HTTP endpoint again through the gateway in front of them."""
    lives = attached(servers)
    gated = lives if passage is not None else []
    tensors = {name: call for live in lives for name, call in live.tensor_endpoints().items()}
    for live in gated:
        assert passage is not None
        tensors |= live.gateway_tensor_endpoints(passage)

    def requests(spec: ModelSpec) -> dict[str, RequestCall]:
        found = {n: call for live in lives for n, call in live.request_endpoints(spec).items()}
        for live in gated:
            assert passage is not None
            found |= live.gateway_request_endpoints(spec, passage)
        return found

    def generation(spec: ModelSpec) -> dict[str, GenerateCall]:
        return {n: call for live in lives for n, call in live.generation_endpoints(spec).items()}

    return Endpoints(tensors, requests, generation)


def compare_outputs(
    spec: ModelSpec, got: dict[str, np.ndarray], want: dict[str, np.ndarray], tolerance: Tolerance
) -> tuple[float, bool, str]:
    worst, passed, detail = 0.0, True, ""
    for t in spec.outputs:
        result = compare(np.asarray(got[t.name], dtype=want[t.name].dtype), want[t.name], tolerance)
        worst = max(worst, result.max_abs_error)
        if not result.passed:
            passed = False
            detail = (
                f"{t.name} index {tuple(result.worst_index)}: served {result.actual:.9g}, "
                f"expected {result.expected:.9g}"
            )
    return worst, passed, detail


def reference_runner(spec: ModelSpec, layout: Layout, fmt: str | None = None):
    """What served answers must equal: eager PyTorch, or the int8 model when that is served
    (its distance from eager is bounded by the accuracy gate at export)."""
    if (fmt or spec.serving.format) == "onnx_int8":
        return load_runner(
            "onnx_int8",
            layout.artifact_dir(spec) / FORMATS["onnx_int8"].file,
            spec.tensor_names,
            output_names=spec.output_names,
            owner=(spec.name, spec.version),
        )
    return torch_runner(load_reference(spec, layout), spec.tensor_names, spec.output_names)


def runtime_of(endpoint: str) -> str:
    """The runtime an endpoint belongs to: its name's first word (`triton-http` -> triton)."""
    return endpoint.split("-")[0]


def serves_int8(spec: ModelSpec, runtime: str) -> bool:
    return spec.for_runtime(runtime).serving.format == "onnx_int8"


def check_golden(spec: ModelSpec, layout: Layout, endpoints: Endpoints) -> list[Check]:
    golden = np.load(layout.artifact(spec).golden)
    inputs = {t.name: golden[f"input.{t.name}"] for t in spec.inputs}
    eager = {t.name: golden[f"output.{t.name}"] for t in spec.outputs}
    checks, served, expected = [], {}, {False: eager}
    # golden rows of a batched model; one whole example for a model without a batch axis
    examples = len(next(iter(inputs.values()))) if spec.batching.max_batch_size else 1
    if any(serves_int8(spec, runtime_of(n)) for n in endpoints.tensors):
        # a runtime serving int8 must answer what the int8 model answers; its drift from eager is
        # reported
        quantised = dict(
            zip(spec.output_names, reference_runner(spec, layout, "onnx_int8")(inputs))
        )
        drift = max(
            float(np.abs(quantised[n].astype(np.float64) - eager[n]).max())
            for n in spec.output_names
        )
        checks.append(
            Check(
                spec.name,
                "int8 in-process vs eager fp32 (drift, gated at export)",
                examples,
                drift,
                True,
                "",
            )
        )
        expected[True] = quantised
    for name, call in endpoints.tensors.items():
        try:
            served[name] = call(spec, inputs)
            want = expected[serves_int8(spec, runtime_of(name))]
            worst, passed, detail = compare_outputs(spec, served[name], want, spec.tolerance)
        except Exception as exc:  # a refused or failed call is a failed check, with the reason
            worst, passed, detail = float("inf"), False, f"{type(exc).__name__}: {exc}"
        checks.append(Check(spec.name, name, examples, worst, passed, detail))
    # The runtimes against each other: the first endpoint of each runtime, pairwise.
    firsts = {}
    for name, outputs in served.items():
        firsts.setdefault(runtime_of(name), outputs)
    runtimes = list(firsts)
    for i, a in enumerate(runtimes):
        for b in runtimes[i + 1 :]:
            if serves_int8(spec, a) != serves_int8(spec, b):
                continue  # int8 on one, fp32 on the other: each was checked against its own model
            worst, passed, detail = compare_outputs(spec, firsts[a], firsts[b], spec.tolerance)
            checks.append(Check(spec.name, f"{a} vs {b}", examples, worst, passed, detail))
    return checks


# --- example requests (image bytes, text, rows) through the pre/post-processing paths ---------


def example_requests(spec: ModelSpec, layout: Layout) -> list[Path]:
    if spec.source.checkpoint is None:
        return []
    return sorted(layout.source(spec.source.checkpoint).parent.joinpath("requests").glob("*"))


def eager_answers(spec: ModelSpec, layout: Layout, requests: list[Path], int8: bool) -> list[dict]:
    """What eager PyTorch (or the int8 model) answers on the shared pre-processing of each
    request, in a RequestCall's form: label and score for a classifier, else the outputs."""
    plan = serving_plan(spec, layout)
    pipeline = Pipeline(plan)
    model = reference_runner(spec, layout, "onnx_int8" if int8 else "eager")
    answers = []
    for path in requests:
        inputs, _ = pipeline.parse(path.read_bytes(), CONTENT_TYPES.get(path.suffix))
        outputs = model(inputs)
        if spec.task.serving.labelled:
            scores = class_scores(outputs[0], spec.task.output)[0]
            answers.append(
                {"label": plan.task.labels[int(scores.argmax())], "score": float(scores.max())}
            )
        else:  # one example: a batched model's first row, else the outputs whole
            one = [o[0] for o in outputs] if spec.batching.max_batch_size else outputs
            answers.append(dict(zip(spec.output_names, one)))
    return answers


def compare_answer(spec: ModelSpec, got: dict, want: dict) -> tuple[float, str]:
    """(largest |error|, the problem or "") of one served example answer against eager's."""
    if not spec.task.serving.labelled:
        worst, passed, detail = compare_outputs(spec, got, want, spec.tolerance)
        return worst, "" if passed else detail
    error = abs(got["score"] - want["score"])
    same_score = compare(np.array([got["score"]]), np.array([want["score"]]), spec.tolerance)
    if got["label"] == want["label"] and same_score.passed:
        return error, ""
    return error, (
        f"served {got['label']!r} {got['score']:.6f}, eager {want['label']!r} {want['score']:.6f}"
    )


def check_requests(spec: ModelSpec, layout: Layout, endpoints: Endpoints) -> list[Check]:
    requests = example_requests(spec, layout)
    if not requests:
        return []
    expected = {}
    checks = []
    for name, call in endpoints.requests(spec).items():
        int8 = serves_int8(spec, runtime_of(name))
        if int8 not in expected:
            expected[int8] = eager_answers(spec, layout, requests, int8)
        worst, problems = 0.0, []
        for path, want in zip(requests, expected[int8]):
            try:
                error, problem = compare_answer(spec, call(path), want)
            except Exception as exc:  # a refused or failed call (or another shape) fails the check
                error, problem = float("inf"), f"{type(exc).__name__}: {exc}"
            worst = max(worst, error)
            if problem:
                problems.append(f"{path.name}: {problem}")
        checks.append(
            Check(spec.name, name, len(requests), worst, not problems, "; ".join(problems))
        )
    return checks


def write_report(checks: list[Check], path: Path) -> dict:
    report = {"passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
