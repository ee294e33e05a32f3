"""Step `verify`: every served endpoint answers what the trained model answers.

Golden samples (model-input tensors and eager outputs, saved by `export`) go through TorchServe
REST and gRPC and Triton HTTP and gRPC; the example requests (image bytes, sentences, rows) go
through TorchServe and Triton's ensembles and are compared with eager PyTorch on the same
pre-processing. TorchServe and Triton are also compared with each other. Writes
reports/verify.json; any failure fails the step.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from handlers.pipeline import Pipeline
from handlers.processing import class_scores
from handlers.runners import torch_runner
from scripts.export import artifact_dir
from scripts.loading import load_reference
from scripts.runtime_config import runtime_config
from scripts.spec import ModelSpec, Tolerance
from scripts.triton_client import TritonClient, decode_labels, spec_datatypes
from scripts.triton_repo import ENSEMBLE_INPUTS, LABEL, SCORE, has_ensemble
from scripts.verify import compare

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".txt": "text/plain", ".json": "application/json"}


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
    """Clients for every served endpoint (built by the caller from running servers)."""
    torchserve_rest: object          # scripts.torchserve_client.TorchServeClient
    torchserve_grpc: object          # scripts.torchserve_grpc.TorchServeGrpcClient
    triton_http: TritonClient
    triton_grpc: TritonClient


# --- golden tensors through each endpoint -----------------------------------------------------------

def answers_to_outputs(spec: ModelSpec, answers: list[dict]) -> dict[str, np.ndarray]:
    return {t.name: np.array([a["outputs"][t.name] for a in answers]) for t in spec.outputs}


def tensor_endpoints(e: Endpoints) -> dict[str, Callable[[ModelSpec, dict], dict[str, np.ndarray]]]:
    def torchserve(client):
        return lambda spec, inputs: answers_to_outputs(
            spec, client.predict(spec.name, {"tensors": {k: v.tolist() for k, v in inputs.items()}}))

    def triton(client):
        return lambda spec, inputs: client.infer(spec.name, inputs, spec_datatypes(spec))

    return {"torchserve-rest": torchserve(e.torchserve_rest), "torchserve-grpc": torchserve(e.torchserve_grpc),
            "triton-http": triton(e.triton_http), "triton-grpc": triton(e.triton_grpc)}


def compare_outputs(spec: ModelSpec, got: dict[str, np.ndarray], want: dict[str, np.ndarray],
                    tolerance: Tolerance) -> tuple[float, bool, str]:
    worst, passed, detail = 0.0, True, ""
    for t in spec.outputs:
        result = compare(np.asarray(got[t.name], dtype=want[t.name].dtype), want[t.name], tolerance)
        worst = max(worst, result.max_abs_error)
        if not result.passed:
            passed = False
            detail = (f"{t.name} index {tuple(result.worst_index)}: served {result.actual:.9g}, "
                      f"expected {result.expected:.9g}")
    return worst, passed, detail


def check_golden(spec: ModelSpec, root: Path, endpoints: Endpoints) -> list[Check]:
    golden = np.load(artifact_dir(spec, root) / "golden.npz")
    inputs = {t.name: golden[f"input.{t.name}"] for t in spec.inputs}
    eager = {t.name: golden[f"output.{t.name}"] for t in spec.outputs}
    checks, served = [], {}
    for name, call in tensor_endpoints(endpoints).items():
        try:
            served[name] = call(spec, inputs)
            worst, passed, detail = compare_outputs(spec, served[name], eager, spec.tolerance)
        except Exception as exc:  # a refused or failed call is a failed check, with the reason
            worst, passed, detail = float("inf"), False, f"{type(exc).__name__}: {exc}"
        checks.append(Check(spec.name, name, len(next(iter(inputs.values()))), worst, passed, detail))
    if "torchserve-rest" in served and "triton-http" in served:
        worst, passed, detail = compare_outputs(spec, served["torchserve-rest"], served["triton-http"], spec.tolerance)
        checks.append(Check(spec.name, "torchserve vs triton", len(golden[f"output.{spec.outputs[0].name}"]),
                            worst, passed, detail))
    return checks


# --- example requests (image bytes, text, rows) through the pre/post-processing paths -----------------

def example_requests(spec: ModelSpec, root: Path) -> list[Path]:
    if spec.source.checkpoint is None:
        return []
    return sorted((root / spec.source.checkpoint).parent.joinpath("requests").glob("*"))


def eager_answers(spec: ModelSpec, root: Path, requests: list[Path]) -> list[tuple[str, float]]:
    """Label and score from eager PyTorch on the shared pre-processing of each request."""
    pipeline = Pipeline(runtime_config(spec, root))
    model = torch_runner(load_reference(spec, root), spec.tensor_names)
    answers = []
    for path in requests:
        inputs, _ = pipeline.parse(path.read_bytes(), CONTENT_TYPES.get(path.suffix))
        scores = class_scores(model(inputs)[0], spec.task.output)[0]
        answers.append((pipeline.config["task"]["labels"][int(scores.argmax())], float(scores.max())))
    return answers


def raw_endpoints(spec: ModelSpec, e: Endpoints) -> dict[str, Callable[[Path], tuple[str, float]]]:
    def torchserve_rest(path: Path):
        answer = e.torchserve_rest.predict(spec.name, path.read_bytes(), CONTENT_TYPES.get(path.suffix))
        return answer["label"], answer["score"]

    def ensemble(client: TritonClient):
        def call(path: Path):
            out = client.infer(f"{spec.name}_ensemble", {ENSEMBLE_INPUTS[spec.task.preprocess.kind]: [path.read_bytes()]})
            return decode_labels(out[LABEL])[0], float(out[SCORE].reshape(-1)[0])
        return call

    endpoints = {"torchserve-rest (requests)": torchserve_rest}
    if has_ensemble(spec):
        endpoints.update({"triton-ensemble-http": ensemble(e.triton_http),
                          "triton-ensemble-grpc": ensemble(e.triton_grpc)})
    return endpoints


def check_requests(spec: ModelSpec, root: Path, endpoints: Endpoints) -> list[Check]:
    requests = example_requests(spec, root)
    if not requests or spec.task.kind != "classification":
        return []
    expected = eager_answers(spec, root, requests)
    checks = []
    for name, call in raw_endpoints(spec, endpoints).items():
        worst, problems = 0.0, []
        for path, (label, score) in zip(requests, expected):
            try:
                got_label, got_score = call(path)
            except Exception as exc:
                problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
                continue
            worst = max(worst, abs(got_score - score))
            if got_label != label or not compare(np.array([got_score]), np.array([score]), spec.tolerance).passed:
                problems.append(f"{path.name}: served {got_label!r} {got_score:.6f}, eager {label!r} {score:.6f}")
        checks.append(Check(spec.name, name, len(requests), worst, not problems, "; ".join(problems)))
    return checks


def verify_models(models: list[ModelSpec], root: Path, endpoints: Endpoints) -> list[Check]:
    checks = []
    for spec in models:
        checks += check_golden(spec, root, endpoints) + check_requests(spec, root, endpoints)
    return checks


def endpoints_for(torchserve, triton) -> Endpoints:
    from scripts.torchserve_client import TorchServeClient
    from scripts.torchserve_grpc import TorchServeGrpcClient

    return Endpoints(TorchServeClient.for_server(torchserve), TorchServeGrpcClient.for_server(torchserve),
                     TritonClient(triton.http_url, "http"), TritonClient(triton.grpc_url, "grpc"))


def write_report(checks: list[Check], path: Path) -> dict:
    report = {"passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
