"""Generated malformed requests, per model and per kind of endpoint.

Each generator yields (category, request) pairs, deterministically from a seed, at least 100
per model: wrong shape, wrong rank, wrong dtype, empty body, truncated or corrupt image bytes,
non-UTF-8 text, oversized payload, NaN/Inf, unknown model or version, wrong content type,
extra fields.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from scripts.spec import ModelSpec

OVERSIZED_BYTES = 7 * 1024 * 1024  # above config.properties' max_request_size (6.25 MiB)


@dataclass
class RestRequest:
    """An HTTP body for TorchServe (also sent over gRPC, where there is no Content-Type)."""
    body: bytes
    content_type: str | None
    model: str
    version: str | None = None


@dataclass
class TritonRequest:
    """A Triton inference: tensors as (name, datatype, numpy array); `raw_json` sends a
    hand-written JSON body over HTTP instead."""
    model: str
    tensors: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    version: str = ""
    raw_json: bytes | None = None


def example_shape(spec: ModelSpec, rng: np.random.Generator) -> list[int]:
    return [int(rng.integers(1, 4))] + [5 if d == -1 else d for d in spec.inputs[0].shape[1:]]


def wrong_shape(spec: ModelSpec, rng: np.random.Generator) -> list[int]:
    shape = example_shape(spec, rng)
    axis = int(rng.integers(1, len(shape)))
    shape[axis] += int(rng.choice([-1, 1, 3]))
    return shape


def wrong_rank(spec: ModelSpec, rng: np.random.Generator) -> list[int]:
    """One or two axes too many, or only the batch axis left."""
    shape = example_shape(spec, rng)
    return [shape + [2], shape + [1, 2], shape[:1]][int(rng.integers(0, 3))]


def corrupt_png(png: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(png)
    for i in rng.integers(8, len(data), size=int(rng.integers(4, 32))):
        data[i] = int(rng.integers(0, 256))
    return bytes(data)


def truncated(png: bytes, rng: np.random.Generator) -> bytes:
    """Cut inside the image data (before the 12-byte IEND trailer), so pixels are missing."""
    return png[: int(rng.integers(8, len(png) - 12))]


def rest_requests(spec: ModelSpec, sample_png: bytes | None, seed: int = 0):
    """At least 100 malformed TorchServe requests for one model."""
    rng = np.random.default_rng(seed)
    name, kind = spec.name, spec.task.preprocess.kind
    for _ in range(9):
        rows = rng.standard_normal(wrong_shape(spec, rng)).tolist()
        yield "wrong shape", RestRequest(json.dumps({"tensors": {spec.inputs[0].name: rows}}).encode(), "application/json", name)
        rows = rng.standard_normal(wrong_rank(spec, rng)).tolist()
        yield "wrong rank", RestRequest(json.dumps({"tensors": {spec.inputs[0].name: rows}}).encode(), "application/json", name)
        junk = rng.choice(["x", None, True, {"a": 1}])
        rows = np.full(example_shape(spec, rng), 0.5).tolist()
        rows[0][0] = junk
        yield "wrong dtype", RestRequest(json.dumps({"tensors": {spec.inputs[0].name: rows}}).encode(), "application/json", name)
        value = rng.choice(["NaN", "Infinity", "-Infinity"])
        rows = json.dumps(np.zeros(example_shape(spec, rng)).tolist()).replace("0.0", value, 1)
        yield "NaN/Inf", RestRequest(f'{{"tensors": {{"{spec.inputs[0].name}": {rows}}}}}'.encode(), "application/json", name)
        yield "extra fields", RestRequest(json.dumps({"inputs": [1.0], f"extra_{rng.integers(100)}": 1}).encode(),
                                          "application/json", name)
        yield "unknown model", RestRequest(b"{}", "application/json", f"no_such_model_{rng.integers(1000)}")
        yield "unknown version", RestRequest(b"{}", "application/json", name, str(int(rng.integers(2, 99))))
        yield "wrong content type", RestRequest(bytes(rng.integers(0, 256, 64, dtype=np.uint8)),
                                                str(rng.choice(["application/xml", "video/mp4", "multipart/mixed"])), name)
        yield "empty body", RestRequest(b"", str(rng.choice(["application/json", "image/png", "text/plain"])), name)
        yield "broken JSON", RestRequest(b'{"inputs": [1, 2' + b"," * int(rng.integers(0, 3)), "application/json", name)
        if kind == "image" and sample_png:
            yield "truncated image", RestRequest(truncated(sample_png, rng), "image/png", name)
            yield "corrupt image", RestRequest(corrupt_png(sample_png, rng), "image/png", name)
        elif kind == "text":
            yield "non-UTF-8 text", RestRequest(b"the film was " + bytes([0xff, 0xfe, int(rng.integers(0x80, 0xc0))]),
                                                "text/plain", name)
            yield "out-of-range ids", RestRequest(json.dumps({"tensors": {spec.inputs[0].name: [[10_000 + int(rng.integers(0, 99))] * 32]}}).encode(),
                                                  "application/json", name)
        else:
            yield "wrong rank", RestRequest(json.dumps({"inputs": rng.standard_normal((2, 3, 4)).tolist()}).encode(),
                                            "application/json", name)
            yield "wrong dtype", RestRequest(json.dumps({"inputs": ["text"] * 30}).encode(), "application/json", name)
    yield "oversized payload", RestRequest(b"[" + b"0," * (OVERSIZED_BYTES // 2) + b"0]", "application/json", name)


def triton_requests(spec: ModelSpec, seed: int = 0):
    """At least 100 malformed inferences for the tensor model."""
    rng = np.random.default_rng(seed)
    first = spec.inputs[0]
    dtype = "FP32" if first.dtype == "float32" else "INT64"
    numpy_dtype = np.float32 if dtype == "FP32" else np.int64
    for _ in range(10):
        yield "wrong shape", TritonRequest(spec.name, [(first.name, dtype, np.zeros(wrong_shape(spec, rng), numpy_dtype))])
        yield "wrong rank", TritonRequest(spec.name, [(first.name, dtype, np.zeros(wrong_rank(spec, rng), numpy_dtype))])
        other = str(rng.choice(["FP64", "INT32", "FP16"] if dtype == "FP32" else ["FP32", "INT32", "UINT8"]))
        other_numpy = {"FP64": np.float64, "INT32": np.int32, "FP16": np.float16, "FP32": np.float32, "UINT8": np.uint8}[other]
        yield "wrong dtype", TritonRequest(spec.name, [(first.name, other, np.zeros(example_shape(spec, rng), other_numpy))])
        if dtype == "FP32":
            bad = np.zeros(example_shape(spec, rng), np.float32)
            bad.flat[int(rng.integers(0, bad.size))] = rng.choice([np.nan, np.inf, -np.inf])
            yield "NaN/Inf", TritonRequest(spec.name, [(first.name, dtype, bad)])
        else:
            yield "out-of-range ids", TritonRequest(spec.name, [(first.name, dtype, np.full(example_shape(spec, rng), 10_000 + int(rng.integers(0, 9)), np.int64))])
        yield "unknown model", TritonRequest(f"no_such_model_{rng.integers(1000)}", [(first.name, dtype, np.zeros(example_shape(spec, rng), numpy_dtype))])
        yield "unknown version", TritonRequest(spec.name, [(first.name, dtype, np.zeros(example_shape(spec, rng), numpy_dtype))],
                                               version=str(int(rng.integers(2, 99))))
        yield "oversized payload", TritonRequest(spec.name, [(first.name, dtype, np.zeros(
            [spec.batching.max_batch_size + int(rng.integers(1, 32))] + example_shape(spec, rng)[1:], numpy_dtype))])
        yield "extra fields", TritonRequest(spec.name, [(first.name, dtype, np.zeros(example_shape(spec, rng), numpy_dtype)),
                                                        (f"extra_{rng.integers(100)}", dtype, np.zeros([1, 1], numpy_dtype))])
        yield "missing input", TritonRequest(spec.name, [])
        yield "broken JSON", TritonRequest(spec.name, raw_json=b'{"inputs": [{"name": "x"' + b"]" * int(rng.integers(0, 3)))
        yield "empty body", TritonRequest(spec.name, raw_json=b"")


def ensemble_requests(spec: ModelSpec, input_name: str, sample_png: bytes | None, seed: int = 0):
    """At least 100 malformed inferences for the ensemble (encoded bytes / text in)."""
    rng = np.random.default_rng(seed)
    ensemble = f"{spec.name}_ensemble"
    for _ in range(20):
        if spec.task.preprocess.kind == "image":
            yield "truncated image", TritonRequest(ensemble, [(input_name, "BYTES", np.array([[truncated(sample_png, rng)]], dtype=np.object_))])
            yield "corrupt image", TritonRequest(ensemble, [(input_name, "BYTES", np.array([[corrupt_png(sample_png, rng)]], dtype=np.object_))])
            yield "not an image", TritonRequest(ensemble, [(input_name, "BYTES", np.array([[bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8))]], dtype=np.object_))])
        else:
            yield "non-UTF-8 text", TritonRequest(ensemble, [(input_name, "BYTES", np.array([[b"a film " + bytes([0xc3, int(rng.integers(0x00, 0x7f))])]], dtype=np.object_))])
            yield "blank text", TritonRequest(ensemble, [(input_name, "BYTES", np.array([[b" " * int(rng.integers(0, 5))]], dtype=np.object_))])
            yield "wrong dtype", TritonRequest(ensemble, [(input_name, "FP32", np.zeros([1, 1], np.float32))])
        yield "empty bytes", TritonRequest(ensemble, [(input_name, "BYTES", np.array([[b""]], dtype=np.object_))])
        yield "wrong shape", TritonRequest(ensemble, [(input_name, "BYTES", np.array([[b"x", b"y"]], dtype=np.object_))])
