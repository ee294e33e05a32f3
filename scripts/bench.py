"""Step `bench`: one invocation, one machine, every setup measured side by side.

Per model (digits_cnn and sentiment_lstm in full, tabular_mlp briefly):
- the limit: in-process inference (eager PyTorch, onnxruntime, TorchScript, AOTInductor) at
  batch 1 and at the spec's max batch size, with 1 intra-op thread and with every core;
- the stock setups a user tries first: TorchServe's `BaseHandler` on the TorchScript file
  (batch size 1, TorchServe's default worker count) and a Triton Python-backend model that
  runs one request at a time with onnxruntime (no dynamic batching);
- this project's deployments exactly as built: `model_store/<name>.mar` and the tensor model
  of the repository `build_repository` writes (the code behind `make triton-repo`);
- load from NVIDIA's perf_analyzer (Triton over HTTP and gRPC; TorchServe with
  `--service-kind torchserve`) at each concurrency, each point a stable measurement window.

Writes reports/bench.json (every figure, machine, versions, exact commands), reports/bench.md
(tables, ratios to the stock setup and to the in-process limit, where each target stands) and
reports/bench_<model>_{throughput,latency}.png.

Every server runs on free loopback ports from its own work directory under build/bench/ and is
stopped on the way out. TorchServe keeps token authorization on: perf_analyzer sends the
inference key with `-H Authorization:Bearer <key>` (the key is redacted in the report).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scripts.errors import BuildError
from scripts.spec import ModelSpec

BENCH_DIR = Path("build/bench")
REPORTS = Path("reports")
FULL_MODELS = ("digits_cnn", "sentiment_lstm")
BRIEF_MODELS = ("tabular_mlp",)
CONCURRENCY = [1, 4, 16, 64]
QUICK_CONCURRENCY = [1, 16]
BRIEF_CONCURRENCY = [16]
# A measurement window is stable when 3 consecutive windows agree within 50% (throughput and
# latency); short windows keep the whole bench inside its time budget on a 2-core box.
MEASUREMENT = {"stability": 50, "max_trials": 4, "interval_ms": 1500}
QUICK_MEASUREMENT = {"stability": 50, "max_trials": 4, "interval_ms": 1000}
RETRY_STABILITY = 100  # one retry with a looser criterion when a point never stabilises
TOKEN_PLACEHOLDER = "<inference key from key_file.json>"
PACKAGES = ["torch", "onnxruntime", "onnx", "numpy", "torchserve", "torch-model-archiver",
            "tritonclient", "nvidia-pytriton", "matplotlib"]


@dataclass(frozen=True)
class Setup:
    key: str
    label: str
    runtime: str            # triton | torchserve
    stock: bool
    protocols: tuple[str, ...]


SETUPS = [
    Setup("triton_stock", "Triton, per-request Python backend (stock)", "triton", True, ("http", "grpc")),
    Setup("triton", "Triton, this project", "triton", False, ("http", "grpc")),
    Setup("torchserve_stock", "TorchServe, BaseHandler + TorchScript, batch 1 (stock)", "torchserve", True, ("http",)),
    Setup("torchserve", "TorchServe, this project", "torchserve", False, ("http",)),
]
SETUP_BY_KEY = {s.key: s for s in SETUPS}
STOCK_OF = {"triton": "triton_stock", "torchserve": "torchserve_stock"}


# --- the stock setups -----------------------------------------------------------------------------

# What a user writes first: BaseHandler loads the TorchScript file and runs it; the default
# preprocess (torch.as_tensor(data)) cannot read TorchServe's request dicts, so the one
# override every tutorial has: the JSON body (one example) to a tensor.
STOCK_HANDLER = '''"""Stock TorchServe route: BaseHandler on a TorchScript file; the body is one example as JSON."""
import json

import torch
from ts.torch_handler.base_handler import BaseHandler


class StockHandler(BaseHandler):
    def preprocess(self, data):
        rows = []
        for row in data:
            body = row.get("data") if row.get("data") is not None else row.get("body")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            rows.append(body)
        return torch.as_tensor(rows)
'''

# What a user writes first for Triton's Python backend: onnxruntime, one request at a time.
STOCK_MODEL_PY = '''"""Stock Triton Python-backend model: onnxruntime, each request run on its own."""
import json
from pathlib import Path

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            outputs = self.session.run(self.outputs, feeds)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(n, o) for n, o in zip(self.outputs, outputs)]))
        return responses
'''


def stock_triton_name(spec: ModelSpec) -> str:
    return f"{spec.name}_per_request"


def stock_torchserve_name(spec: ModelSpec) -> str:
    return f"{spec.name}_stock"


def stock_triton_config(spec: ModelSpec, signature):
    """The per-request config: the spec's tensors and max batch size (clients send [1, ...]),
    one CPU instance, and no dynamic_batching: Triton hands execute() one request at a time."""
    from tritonclient.grpc import model_config_pb2 as mc

    from scripts.triton_repo import model_config

    config = model_config(spec, "python", signature)
    config.name = stock_triton_name(spec)
    config.ClearField("dynamic_batching")
    config.ClearField("parameters")
    config.ClearField("instance_group")
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    return config


def write_stock_triton(spec: ModelSpec, root: Path, repo: Path) -> str:
    from handlers.runners import ARTIFACT_FILES
    from scripts.export import artifact_dir
    from scripts.triton_repo import checked_signature, write_config

    if "onnx" not in spec.export.formats:
        raise BuildError(f"{spec.name}: the per-request Triton setup runs the ONNX export; add onnx to export.formats")
    config = stock_triton_config(spec, checked_signature(spec, root))
    folder = repo / config.name
    shutil.rmtree(folder, ignore_errors=True)
    version = folder / str(spec.version)
    version.mkdir(parents=True)
    (version / "model.py").write_text(STOCK_MODEL_PY)
    shutil.copy2(artifact_dir(spec, root) / ARTIFACT_FILES["onnx"], version / "model.onnx")
    write_config(config, folder)
    return config.name


def write_stock_mar(spec: ModelSpec, root: Path, store: Path) -> str:
    """TorchScript + the stock handler with torch-model-archiver's Python API; no
    model-config.yaml, so TorchServe's defaults apply (batch size 1, default workers)."""
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    from handlers.runners import ARTIFACT_FILES
    from scripts.export import artifact_dir

    if "torchscript" not in spec.export.formats:
        raise BuildError(f"{spec.name}: the stock TorchServe route loads the TorchScript export; "
                         "add torchscript to export.formats")
    name = stock_torchserve_name(spec)
    handler = store / "stock_handler.py"
    handler.write_text(STOCK_HANDLER)
    (store / f"{name}.mar").unlink(missing_ok=True)
    generate_model_archive(ModelArchiverConfig(
        model_name=name, version=str(spec.version), handler=str(handler),
        serialized_file=str(artifact_dir(spec, root) / ARTIFACT_FILES["torchscript"]),
        export_path=str(store), archive_format="default", force=True))
    handler.unlink()
    return name


def stock_torchserve_config(rendered: str) -> str:
    """The project's rendered config.properties minus `default_workers_per_model`, so the
    stock models get TorchServe's own default (one worker per core). Token auth stays on."""
    return "".join(line + "\n" for line in rendered.splitlines()
                   if not line.strip().startswith("default_workers_per_model"))


# --- request data ----------------------------------------------------------------------------------

def golden(spec: ModelSpec, root: Path) -> dict[str, np.ndarray]:
    from scripts.export import artifact_dir
    from scripts.perf import golden_rows

    return golden_rows(artifact_dir(spec, root), spec.tensor_names)


def torchserve_bodies(spec: ModelSpec, rows: dict[str, np.ndarray], stock: bool) -> list[str]:
    """One request body per golden example, the same model-input values for both setups:
    the stock handler takes the example itself, this project's handler {"tensors": ...}."""
    count = len(next(iter(rows.values())))
    if stock:
        if len(rows) != 1:
            raise BuildError(f"{spec.name}: the stock BaseHandler route takes one input tensor")
        values = next(iter(rows.values()))
        return [json.dumps(values[i].tolist()) for i in range(count)]
    return [json.dumps({"tensors": {n: v[i:i + 1].tolist() for n, v in rows.items()}}) for i in range(count)]


def torchserve_input_data(bodies: list[str], folder: Path, tag: str) -> Path:
    """perf_analyzer's torchserve --input-data: {"data": [{"TORCHSERVE_INPUT": [file]}, ...]}."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, body in enumerate(bodies):
        path = folder / f"{tag}.body{i}.json"
        path.write_text(body)
        entries.append({"TORCHSERVE_INPUT": [str(path.resolve())]})
    data = folder / f"{tag}.input.json"
    data.write_text(json.dumps({"data": entries}))
    return data


def triton_input_data(rows: dict[str, np.ndarray], folder: Path, tag: str) -> Path:
    from scripts.perf import write_input_data

    return write_input_data(rows, folder / f"{tag}.input.json")


# --- perf_analyzer ---------------------------------------------------------------------------------

def redact(cmd: list[str], token: str | None) -> str:
    import shlex

    text = shlex.join(cmd)
    return text.replace(token, TOKEN_PLACEHOLDER) if token else text


def perf_point(model: str, url: str, protocol: str, concurrency: int, data: Path, workdir: Path,
               measurement: dict, service_kind: str = "triton", token: str | None = None,
               timeout_s: float = 120) -> dict:
    """One concurrency level: the parsed CSV row plus the command; on an unstable window one
    retry with a looser stability criterion; on failure the error instead of figures."""
    from scripts import perf

    env = perf.environment(workdir)
    report = workdir / f"{model}.{service_kind}.{protocol}.c{concurrency}.csv"
    attempts = [measurement, {**measurement, "stability": RETRY_STABILITY}]
    error = ""
    for attempt in attempts:
        cmd = perf.command(model, url, protocol, concurrency, data, report, attempt, service_kind, token)
        report.unlink(missing_ok=True)
        started = time.monotonic()
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            error = f"perf_analyzer ran past {timeout_s:.0f}s"
            continue
        seconds = time.monotonic() - started
        if done.returncode == 0 and report.exists():
            row = perf.parse_report(report)[0]
            return {**row, "stability_pct": attempt["stability"], "seconds": round(seconds, 1),
                    "command": redact(cmd, token)}
        error = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
    return {"concurrency": concurrency, "error": error, "command": redact(cmd, token)}


# --- in-process limit ------------------------------------------------------------------------------

def tiled(rows: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """`batch` rows cycled from the golden examples."""
    return {n: np.ascontiguousarray(np.resize(v, (batch, *v.shape[1:])).astype(v.dtype)) for n, v in rows.items()}


def time_runner(run, inputs: dict[str, np.ndarray], batch: int, min_time_s: float, warmup: int = 3) -> dict:
    for _ in range(warmup):
        run(inputs)
    latencies = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run(inputs)
        latencies.append(time.perf_counter() - t0)
        if time.perf_counter() - started >= min_time_s and len(latencies) >= 5:
            break
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000.0
    return {"batch": batch, "throughput": batch * len(latencies) / elapsed, "calls": len(latencies),
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def in_process(spec: ModelSpec, root: Path, min_time_s: float, threads: list[int]) -> list[dict]:
    """Eager PyTorch, onnxruntime and every other exported format, at batch 1 and the max batch
    size, per intra-op thread count: inferences/s and per-call latency."""
    import torch

    from handlers.runners import ARTIFACT_FILES, load_runner, torch_runner
    from scripts.export import artifact_dir
    from scripts.loading import load_reference

    rows = golden(spec, root)
    batches = sorted({1, max(spec.batching.max_batch_size, 1)})
    formats = ["eager"] + [f for f in ("onnx", "torchscript", "aoti") if f in spec.export.formats]
    results = []
    saved = torch.get_num_threads()
    try:
        for count in threads:
            for fmt in formats:
                torch.set_num_threads(count)
                if fmt == "eager":
                    run = torch_runner(load_reference(spec, root).eval(), spec.tensor_names)
                else:
                    run = load_runner(fmt, artifact_dir(spec, root) / ARTIFACT_FILES[fmt], spec.tensor_names, count)
                for batch in batches:
                    results.append({"format": fmt, "threads": count,
                                    **time_runner(run, tiled(rows, batch), batch, min_time_s)})
    finally:
        torch.set_num_threads(saved)
    return results


def limit_of(results: list[dict], batch: int, formats=("eager", "onnx")) -> dict | None:
    """The in-process limit at a batch size: the best of eager PyTorch and onnxruntime (any
    thread count)."""
    candidates = [r for r in results if r["batch"] == batch and r["format"] in formats]
    return max(candidates, key=lambda r: r["throughput"]) if candidates else None


# --- servers ---------------------------------------------------------------------------------------

def bench_triton(specs: list[ModelSpec], root: Path, workdir: Path, plan: dict[str, list[int]],
                 measurement: dict, log) -> list[dict]:
    from scripts import triton_server
    from scripts.servers import free_port
    from scripts.triton_repo import build_repository

    repo = workdir / "triton_repo"
    build_repository(specs, root, repo)           # what `make triton-repo` writes
    names = {}
    for spec in specs:
        names[(spec.name, "triton")] = spec.name
        names[(spec.name, "triton_stock")] = write_stock_triton(spec, root, repo)
    ports = triton_server.Ports(free_port(), free_port(), free_port())
    server = triton_server.start(repo, sorted(set(names.values())), ports, workdir / "triton")
    points = []
    try:
        waited = triton_server.wait_ready(server, sorted(set(names.values())), 300)
        log(f"tritonserver READY in {waited:.1f}s")
        for spec in specs:
            data = triton_input_data(golden(spec, root), workdir / "data", spec.name)
            for key in ("triton_stock", "triton"):
                for protocol in SETUP_BY_KEY[key].protocols if len(plan[spec.name]) > 1 else ("http",):
                    url = server.http_url if protocol == "http" else server.grpc_url
                    for level in plan[spec.name]:
                        point = perf_point(names[(spec.name, key)], url, protocol, level, data,
                                           workdir / "perf", measurement)
                        points.append({"model": spec.name, "setup": key, "protocol": protocol, **point})
                        log(describe_point(points[-1]))
    finally:
        triton_server.stop(server.workdir)
    return points


def bench_torchserve(specs: list[ModelSpec], root: Path, workdir: Path, plan: dict[str, list[int]],
                     measurement: dict, log, mar_store: Path | None = None) -> list[dict]:
    from scripts import torchserve_server
    from scripts.archive import archive_model, mar_path
    from scripts.servers import free_port

    store = workdir / "model_store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    names = {}
    source = mar_store or root / "model_store"
    for spec in specs:
        if mar_store is None:
            archive_model(spec, root, source)        # what `make archive` builds (incremental)
        shutil.copy2(mar_path(spec, source), store / f"{spec.name}.mar")
        names[(spec.name, "torchserve")] = spec.name
        names[(spec.name, "torchserve_stock")] = write_stock_mar(spec, root, store)
    ports = torchserve_server.Ports(*(free_port() for _ in range(5)))
    models = sorted(set(names.values()))
    # The project's config.properties minus default_workers_per_model: the stock models get
    # TorchServe's own default (one worker per core); ours keep their model-config.yaml.
    template = workdir / "config.properties"
    template.write_text(stock_torchserve_config((root / "config.properties").read_text()))
    server = torchserve_server.start(template, store, models, ports, workdir / "torchserve")
    points = []
    try:
        waited = torchserve_server.wait_ready(server, models, 300)
        log(f"TorchServe READY in {waited:.1f}s")
        token = server.key("inference")
        workers = torchserve_workers(server, models)
        for spec in specs:
            rows = golden(spec, root)
            for key in ("torchserve_stock", "torchserve"):
                data = torchserve_input_data(torchserve_bodies(spec, rows, key.endswith("stock")),
                                             workdir / "data", f"{spec.name}.{key}")
                for level in plan[spec.name]:
                    point = perf_point(names[(spec.name, key)], f"127.0.0.1:{ports.inference}", "http", level,
                                       data, workdir / "perf", measurement, "torchserve", token)
                    points.append({"model": spec.name, "setup": key, "protocol": "http",
                                   "workers": workers.get(names[(spec.name, key)]), **point})
                    log(describe_point(points[-1]))
    finally:
        torchserve_server.stop(server.workdir)
    return points


def torchserve_workers(server, models: list[str]) -> dict[str, int]:
    import requests

    counts = {}
    for model in models:
        try:
            reply = requests.get(f"{server.management_url}/models/{model}", timeout=5,
                                 headers={"Authorization": f"Bearer {server.key('management')}"})
            counts[model] = len(reply.json()[0].get("workers", []))
        except Exception:  # informative only
            pass
    return counts


def describe_point(p: dict) -> str:
    head = f"{p['model']:<15} {p['setup']:<17} {p['protocol']:<5} c={p['concurrency']:<3}"
    if "error" in p:
        return f"{head} FAILED: {p['error'].splitlines()[-1] if p['error'] else '?'}"
    return f"{head} {p['throughput']:9.1f}/s  p50 {p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms"


# --- comparisons and targets ------------------------------------------------------------------------

def find_point(points: list[dict], model: str, setup: str, protocol: str, concurrency: int) -> dict | None:
    for p in points:
        if (p["model"], p["setup"], p["protocol"], p["concurrency"]) == (model, setup, protocol, concurrency) \
                and "error" not in p:
            return p
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else a / b


def comparisons(points: list[dict], limits: dict[str, dict]) -> list[dict]:
    """Per measured point: throughput and p99 as ratios to the stock setup of the same runtime
    (same protocol, same concurrency) and throughput as a ratio to the in-process limit."""
    out = []
    for p in points:
        if "error" in p:
            continue
        stock = find_point(points, p["model"], STOCK_OF[SETUP_BY_KEY[p["setup"]].runtime], p["protocol"],
                           p["concurrency"])
        limit = limits.get(p["model"], {})
        out.append({"model": p["model"], "setup": p["setup"], "protocol": p["protocol"],
                    "concurrency": p["concurrency"], "throughput": p["throughput"],
                    "throughput_vs_stock": ratio(p["throughput"], stock and stock["throughput"]),
                    "p99_vs_stock": ratio(p["p99_ms"], stock and stock["p99_ms"]),
                    "throughput_vs_limit_batch1": ratio(p["throughput"], limit.get("batch1", {}).get("throughput")),
                    "throughput_vs_limit_max_batch": ratio(p["throughput"], limit.get("max_batch", {}).get("throughput"))})
    return out


def stock_target(points, model: str, runtime: str, concurrency: int, factor: float) -> dict:
    """Ours >= factor x stock throughput, with p99 no worse than stock's, per protocol."""
    ours_key, stock_key = runtime, STOCK_OF[runtime]
    checks, reasons = [], []
    for protocol in SETUP_BY_KEY[ours_key].protocols:
        ours = find_point(points, model, ours_key, protocol, concurrency)
        stock = find_point(points, model, stock_key, protocol, concurrency)
        if ours is None or stock is None:
            checks.append({"protocol": protocol, "met": None})
            reasons.append(f"{protocol}: not measured (see the errors in bench.json)")
            continue
        speedup = ours["throughput"] / stock["throughput"]
        p99_ok = ours["p99_ms"] <= stock["p99_ms"]
        met = speedup >= factor and p99_ok
        checks.append({"protocol": protocol, "met": met, "throughput_ratio": speedup,
                       "p99_ms": ours["p99_ms"], "stock_p99_ms": stock["p99_ms"],
                       "throughput": ours["throughput"], "stock_throughput": stock["throughput"]})
        reasons.append(f"{protocol}: {ours['throughput']:.0f}/s vs {stock['throughput']:.0f}/s = {speedup:.2f}x "
                       f"(needs {factor}x), p99 {ours['p99_ms']:.1f} ms vs {stock['p99_ms']:.1f} ms"
                       + ("" if p99_ok else " (worse)"))
    return {"checks": checks, "met": all_met(checks), "detail": "; ".join(reasons)}


def limit_target(points, limits, model: str, concurrency: int, factor: float) -> dict:
    """Served throughput >= factor x the in-process limit at the max batch size, both runtimes."""
    limit = limits.get(model, {}).get("max_batch")
    checks, reasons = [], []
    for runtime in ("triton", "torchserve"):
        for protocol in SETUP_BY_KEY[runtime].protocols:
            ours = find_point(points, model, runtime, protocol, concurrency)
            if ours is None or limit is None:
                checks.append({"runtime": runtime, "protocol": protocol, "met": None})
                reasons.append(f"{runtime} {protocol}: not measured")
                continue
            share = ours["throughput"] / limit["throughput"]
            checks.append({"runtime": runtime, "protocol": protocol, "met": share >= factor,
                           "ratio": share, "throughput": ours["throughput"], "limit": limit["throughput"]})
            reasons.append(f"{runtime} {protocol}: {ours['throughput']:.0f}/s = {share:.2f}x of "
                           f"{limit['throughput']:.0f}/s (needs {factor}x)")
    return {"checks": checks, "met": all_met(checks), "detail": "; ".join(reasons),
            "limit": limit and {k: limit[k] for k in ("format", "threads", "batch", "throughput")}}


def all_met(checks: list[dict]) -> bool | None:
    values = [c["met"] for c in checks]
    if any(v is None for v in values):
        return None
    return all(values)


def limiting_factor(target: dict, points, in_proc: list[dict], model: str, runtime_keys: list[str]) -> str:
    """Words from the numbers: where the time goes when a target is missed (or what bounds it)."""
    batch1 = [r for r in in_proc if r["batch"] == 1 and r["format"] in ("eager", "onnx")]
    compute_ms = min(r["p50_ms"] for r in batch1) if batch1 else None
    parts = []
    for key in runtime_keys:
        c1 = find_point(points, model, key, "http", 1)
        if c1 and compute_ms is not None:
            parts.append(f"{key}: one request takes {c1['p50_ms']:.2f} ms at concurrency 1 against "
                         f"{compute_ms:.2f} ms of model compute in-process, so ~{max(c1['p50_ms'] - compute_ms, 0):.2f} ms "
                         "per request is serving overhead (HTTP/gRPC, (de)serialisation, IPC to the worker)")
    parts.append(f"the load generator (perf_analyzer), the server front-end and the model share "
                 f"{os.cpu_count()} cores")
    return "; ".join(parts)


def evaluate_targets(points, limits, in_proc_by_model) -> list[dict]:
    targets = []
    t = stock_target(points, "digits_cnn", "triton", 16, 1.5)
    targets.append({"id": "digits_triton_vs_per_request", "model": "digits_cnn",
                    "text": "digits_cnn at concurrency 16: this project's Triton >= 1.5x the per-request "
                            "Python-backend setup, p99 no worse", **t})
    t = stock_target(points, "digits_cnn", "torchserve", 16, 3.0)
    targets.append({"id": "digits_torchserve_vs_stock", "model": "digits_cnn",
                    "text": "digits_cnn at concurrency 16: this project's TorchServe >= 3x the stock "
                            "BaseHandler route, p99 no worse", **t})
    t = limit_target(points, limits, "sentiment_lstm", 64, 0.8)
    targets.append({"id": "sentiment_served_vs_in_process", "model": "sentiment_lstm",
                    "text": "sentiment_lstm at concurrency 64: served throughput >= 0.8x in-process "
                            "throughput at the max batch size, on both runtimes", **t})
    for target in targets:
        keys = ["triton", "torchserve"] if target["model"] == "sentiment_lstm" else \
            [target["id"].split("_")[1], STOCK_OF[target["id"].split("_")[1]]]
        target["status"] = {True: "met", False: "missed", None: "not measured"}[target["met"]]
        target["limited_by"] = limiting_factor(target, points, in_proc_by_model.get(target["model"], []),
                                               target["model"], keys)
    return targets


# --- machine and versions ---------------------------------------------------------------------------

def machine_info() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory,
            "python": platform.python_version(), "versions": versions,
            "torch_threads_default": _torch_threads(),
            # Other work on the box skews every figure: the 1/5/15-minute load when the report is written.
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# --- the whole run ----------------------------------------------------------------------------------

def plan_for(specs: list[ModelSpec], quick: bool) -> dict[str, list[int]]:
    full = QUICK_CONCURRENCY if quick else CONCURRENCY
    return {s.name: (BRIEF_CONCURRENCY if s.name in BRIEF_MODELS else full) for s in specs}


def run_bench(models: list[ModelSpec], root: Path, out_dir: Path | None = None, quick: bool = False,
              log=print, mar_store: Path | None = None) -> dict:
    """Measure everything, write bench.json / bench.md / PNGs into out_dir; returns the report."""
    started = time.monotonic()
    out_dir = out_dir or root / REPORTS
    workdir = (root / BENCH_DIR).resolve()
    shutil.rmtree(workdir / "perf", ignore_errors=True)
    (workdir / "perf").mkdir(parents=True, exist_ok=True)
    measurement = QUICK_MEASUREMENT if quick else MEASUREMENT
    plan = plan_for(models, quick)
    threads = sorted({1, os.cpu_count() or 1})

    in_proc, limits = {}, {}
    for spec in models:
        log(f"in-process: {spec.name}")
        brief = spec.name in BRIEF_MODELS
        results = in_process(spec, root, 0.3 if quick or brief else 1.0, threads)
        in_proc[spec.name] = results
        mbs = max(spec.batching.max_batch_size, 1)
        limits[spec.name] = {"batch1": limit_of(results, 1), "max_batch": limit_of(results, mbs)}
    timings = {"in_process_s": round(time.monotonic() - started, 1)}

    points = []
    t0 = time.monotonic()
    points += bench_triton(models, root, workdir, plan, measurement, log)
    timings["triton_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    points += bench_torchserve(models, root, workdir, plan, measurement, log, mar_store)
    timings["torchserve_s"] = round(time.monotonic() - t0, 1)

    targets = evaluate_targets(points, limits, in_proc)
    timings["total_s"] = round(time.monotonic() - started, 1)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "machine": machine_info(),
        "invocation": " ".join([Path(sys.executable).name, *sys.argv]),
        "measurement": {**measurement, "concurrency": plan, "retry_stability": RETRY_STABILITY,
                        "in_process_threads": threads},
        "setups": {s.key: {"label": s.label, "runtime": s.runtime, "stock": s.stock,
                           "protocols": list(s.protocols)} for s in SETUPS},
        "models": {s.name: {"max_batch_size": s.batching.max_batch_size,
                            "max_queue_delay_ms": s.batching.max_queue_delay_ms,
                            "serving_format": s.serving.format, "workers": s.serving.workers.model_dump(),
                            "instances": s.serving.instances} for s in models},
        "in_process": in_proc,
        "limits": limits,
        "points": points,
        "comparisons": comparisons(points, limits),
        "targets": targets,
        "timings": timings,
    }
    write_report(report, out_dir)
    return report


def write_report(report: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    plots = plot(report, out_dir)
    (out_dir / "bench.md").write_text(markdown(report, [p.name for p in plots]))
    return [out_dir / "bench.json", out_dir / "bench.md", *plots]


# --- the report -----------------------------------------------------------------------------------

def series(report: dict, model: str) -> dict[tuple[str, str], list[dict]]:
    lines: dict[tuple[str, str], list[dict]] = {}
    for p in report["points"]:
        if p["model"] == model and "error" not in p:
            lines.setdefault((p["setup"], p["protocol"]), []).append(p)
    return {k: sorted(v, key=lambda p: p["concurrency"]) for k, v in lines.items()}


def plot(report: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    styles = {"triton_stock": ("tab:orange", "--"), "triton": ("tab:blue", "-"),
              "torchserve_stock": ("tab:red", "--"), "torchserve": ("tab:green", "-")}
    markers = {"http": "o", "grpc": "s"}
    for model in report["models"]:
        lines = series(report, model)
        if not lines or all(len(v) < 2 for v in lines.values()):
            continue
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for (setup, protocol), pts in lines.items():
            color, dash = styles[setup]
            ax.plot([p["concurrency"] for p in pts], [p["throughput"] for p in pts], color=color, linestyle=dash,
                    marker=markers[protocol], label=f"{SETUP_BY_KEY[setup].label} [{protocol}]")
        limit = report["limits"][model].get("max_batch")
        if limit:
            ax.axhline(limit["throughput"], color="black", linestyle=":", linewidth=1,
                       label=f"in-process limit, batch {limit['batch']} ({limit['format']}, {limit['threads']} thr)")
        one = report["limits"][model].get("batch1")
        if one:
            ax.axhline(one["throughput"], color="grey", linestyle=":", linewidth=1,
                       label=f"in-process, batch 1 ({one['format']}, {one['threads']} thr)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrency (perf_analyzer)")
        ax.set_ylabel("inferences / s")
        ax.set_title(f"{model}: throughput against concurrency")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"bench_{model}_throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
        for ax, key, title in zip(axes, ("p50_ms", "p99_ms"), ("p50", "p99")):
            for (setup, protocol), pts in lines.items():
                color, dash = styles[setup]
                ax.plot([p["concurrency"] for p in pts], [p[key] for p in pts], color=color, linestyle=dash,
                        marker=markers[protocol], label=f"{SETUP_BY_KEY[setup].label} [{protocol}]")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("concurrency (perf_analyzer)")
            ax.set_title(f"{model}: {title} latency")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("ms")
        axes[1].legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"bench_{model}_latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(report: dict, plots: list[str]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmark", "",
        f"{report['created']} on {m['cpu'] or 'unknown CPU'}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Python {m['python']}. " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".", "",
        f"Every figure comes from this one run (`{report['invocation']}`, {report['timings']['total_s']:.0f} s). "
        f"perf_analyzer: stability {report['measurement']['stability']}%, at most "
        f"{report['measurement']['max_trials']} windows of {report['measurement']['interval_ms']} ms per point; "
        "the exact command of every point is in bench.json. Ratios: throughput and p99 against the stock "
        "setup of the same runtime (same protocol and concurrency), throughput against the in-process limit "
        "(best of eager PyTorch and onnxruntime at that batch size).", "",
        "Setups:", "",
    ]
    for s in SETUPS:
        lines.append(f"- `{s.key}`: {s.label}")
    lines += ["", "## Targets", "", "| target | status | figures | limited by |", "| --- | --- | --- | --- |"]
    for t in report["targets"]:
        lines.append(f"| {t['text']} | **{t['status']}** | {t['detail']} | {t['limited_by']} |")
    comps = {(c["model"], c["setup"], c["protocol"], c["concurrency"]): c for c in report["comparisons"]}
    for model, info in report["models"].items():
        lines += ["", f"## {model}", "",
                  f"Spec: max batch size {info['max_batch_size']}, queue delay {info['max_queue_delay_ms']} ms, "
                  f"TorchServe workers {info['workers']}, Triton instances {info['instances']}, "
                  f"TorchServe serves {info['serving_format']}, Triton's Python backend ONNX.", "",
                  "| setup | protocol | concurrency | infer/s | p50 ms | p99 ms | x stock | p99 x stock | "
                  "x limit (batch 1) | x limit (max batch) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for p in report["points"]:
            if p["model"] != model:
                continue
            if "error" in p:
                lines.append(f"| {p['setup']} | {p['protocol']} | {p['concurrency']} | failed: "
                             f"{p['error'].splitlines()[-1] if p['error'] else '?'} | | | | | | |")
                continue
            c = comps[(model, p["setup"], p["protocol"], p["concurrency"])]
            lines.append(f"| {p['setup']} | {p['protocol']} | {p['concurrency']} | {p['throughput']:.1f} | "
                         f"{p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                         f"{'-' if SETUP_BY_KEY[p['setup']].stock else fmt_ratio(c['throughput_vs_stock'])} | "
                         f"{'-' if SETUP_BY_KEY[p['setup']].stock else fmt_ratio(c['p99_vs_stock'])} | "
                         f"{fmt_ratio(c['throughput_vs_limit_batch1'])} | {fmt_ratio(c['throughput_vs_limit_max_batch'])} |")
        lines += ["", "In-process (per call; batch rows per call):", "",
                  "| format | threads | batch | infer/s | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- | --- |"]
        for r in report["in_process"].get(model, []):
            lines.append(f"| {r['format']} | {r['threads']} | {r['batch']} | {r['throughput']:.1f} | "
                         f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
        for name in plots:
            if name.startswith(f"bench_{model}_"):
                lines += ["", f"![{name}]({name})"]
    lines += ["", "Reproduce: `make bench` (or `.venv/bin/python -m scripts bench --help`).", ""]
    return "\n".join(lines)
