"""The KServe bundles started as KServe starts them, on this machine without Kubernetes:
TorchServe with KServe's command line on the generated TorchServe tree, tritonserver with
KServe's arguments on the generated (Python-backend) Triton tree; golden answers over v1 and
v2 (TorchServe) and v2 HTTP/gRPC (Triton). What the tests change is named: the mount path
(/mnt/models -> the tree), the ports (free loopback ones) and, for tritonserver, this machine's
backend directory."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from scripts.pipeline.verify import compare
from scripts.kserve.bundle import make_bundles
from scripts.runtimes.processes import free_port
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve import kserve as ts_kserve
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.triton import kserve as tr_kserve
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton.client import TritonClient, spec_datatypes
from scripts.runtimes.triton.configs import read_config
from scripts.spec import load_spec
from tests.conftest import LAYOUT, REPO

pytestmark = pytest.mark.integration
SPECFILE = load_spec(REPO / "models.yaml")
SPEC = {m.name: m for m in SPECFILE.models}
PORT_KEYS = (
    "inference_address",
    "management_address",
    "metrics_address",
    "grpc_inference_port",
    "grpc_management_port",
)


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(LAYOUT.artifact_dir(SPEC[name]) / "golden.npz") as saved:
        return dict(saved)


def assert_golden(name: str, outputs: dict[str, np.ndarray], rows: int) -> None:
    data = golden(name)
    for t in SPEC[name].outputs:
        result = compare(
            np.asarray(outputs[t.name], dtype=np.float32).reshape(
                data[f"output.{t.name}"][:rows].shape
            ),
            data[f"output.{t.name}"][:rows],
            SPEC[name].tolerance,
        )
        assert result.passed, (name, t.name, result)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Both trees (Triton: the Python-backend variant, the one that runs here) and the manifests."""
    out = tmp_path_factory.mktemp("kserve")
    settings = SPECFILE.kserve.model_copy(update={"triton_backend": "python"})
    made, manifests = make_bundles(SPECFILE.models, LAYOUT, list(RUNTIMES.values()), settings, out)
    return {b.runtime: b for b in made}, manifests


def as_kserve_pod(config: Path, tree: Path, ports: ts.Ports) -> str:
    """The generated config with the two things a pod has and this machine has not: the mount
    at /mnt/models and its own ports (the test's are free loopback ones)."""
    text = config.read_text()
    original = text
    text = text.replace(str(ts_kserve.MOUNT), str(tree))
    for key, port in zip(PORT_KEYS, dataclasses.astuple(ports)):
        text = re.sub(
            rf"^({key}=).*$",
            lambda m, p=port, k=key: (
                m.group(1) + (f"http://127.0.0.1:{p}" if k.endswith("address") else str(p))
            ),
            text,
            flags=re.MULTILINE,
        )
    changed = {
        a.split("=")[0]
        for a, b in zip(original.splitlines(), text.splitlines())
        if a != b and not a.startswith("#")
    }
    assert changed <= {*PORT_KEYS, "model_store", "allowed_urls"}, changed
    return text


@pytest.fixture(scope="module")
def kserve_torchserve(bundles, tmp_path_factory):
    tree = bundles[0]["torchserve"].tree
    ports = ts.Ports(*(free_port() for _ in range(5)))
    config = tree / "config" / "config.properties"
    config.write_text(as_kserve_pod(config, tree, ports))
    server = ts.TorchServe(tmp_path_factory.mktemp("ts-kserve"), ports)
    for sub in ("tmp", "logs"):
        (server.workdir / sub).mkdir()
    command = ts_kserve.kserve_command(tree)
    command[0] = str(Path(sys.executable).with_name("torchserve"))
    with open(
        server.workdir / "logs" / "launcher.log", "wb"
    ) as log:  # not a pipe: the JVM keeps it open
        subprocess.run(
            command,
            cwd=server.workdir,
            env=server.env(),
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert not server.key_file.exists()  # token authorization is off: no key_file.json
        ts.wait_ready(server, list(SPEC), 240)  # as KServe's wrapper asks: management API, no token
        yield server
    finally:
        ts.stop(server.workdir)


def test_torchserve_tree_is_what_kserve_expects(bundles):
    tree = bundles[0]["torchserve"].tree
    assert sorted(p.name for p in (tree / "model-store").iterdir()) == sorted(
        f"{n}.mar" for n in SPEC
    )
    settings = dict(
        line.split("=", 1)
        for line in (tree / "config" / "config.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert settings["model_store"] == "/mnt/models/model-store"
    assert settings["inference_address"] == "http://127.0.0.1:8085"
    assert settings["disable_token_authorization"] == "true"
    assert (
        settings["metrics_address"] == "http://0.0.0.0:8082"
        and settings["enable_envvars_config"] == "false"
    )
    assert "service_envelope" not in settings and settings["enable_model_api"] == "false"
    snapshot = json.loads(settings["model_snapshot"])
    assert sorted(snapshot["models"]) == sorted(SPEC) and snapshot["modelCount"] == len(SPEC)


@pytest.mark.parametrize("name", sorted(SPEC))
def test_torchserve_v2_tensors_give_golden_outputs(kserve_torchserve, name):
    data = golden(name)
    body = {
        "id": "golden",
        "inputs": [
            {
                "name": t.name,
                "shape": list(data[f"input.{t.name}"][:4].shape),
                "datatype": spec_datatypes(SPEC[name])[t.name],
                "data": data[f"input.{t.name}"][:4].reshape(-1).tolist(),
            }
            for t in SPEC[name].inputs
        ],
    }
    reply = requests.post(
        f"{kserve_torchserve.inference_url}/v2/models/{name}/infer", json=body, timeout=30
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["id"] == "golden" and answer["model_name"] == name
    assert_golden(name, {o["name"]: o["data"] for o in answer["outputs"]}, 4)


def test_torchserve_v1_instances(kserve_torchserve):
    url = kserve_torchserve.inference_url
    data = golden("digits_cnn")  # image arrays are model inputs as they are: golden outputs
    reply = requests.post(
        f"{url}/v1/models/digits_cnn:predict",
        timeout=30,
        json={"instances": data["input.image"][:3].tolist()},
    )
    assert reply.status_code == 200, reply.text
    assert_golden(
        "digits_cnn", {"logits": [p["outputs"]["logits"] for p in reply.json()["predictions"]]}, 3
    )
    pngs = sorted((REPO / "checkpoints/digits_cnn/requests").glob("digit_*.png"))
    reply = requests.post(
        f"{url}/v1/models/digits_cnn:predict",
        timeout=30,
        json={"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in pngs]},
    )
    assert [p["label"] for p in reply.json()["predictions"]] == [p.stem.split("_")[1] for p in pngs]
    texts = [
        "an absolute delight",
        "a tedious mess",
    ]  # v1 equals the handler's own (verified) route
    v1 = requests.post(
        f"{url}/v1/models/sentiment_lstm:predict", json={"instances": texts}, timeout=30
    )
    own = requests.post(f"{url}/predictions/sentiment_lstm", json={"inputs": texts}, timeout=30)
    assert v1.status_code == own.status_code == 200 and v1.json()["predictions"] == own.json()


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("v1/models/tabular_mlp:predict", {"instances": [[1.0, 2.0]]}, "expected shape [30]"),
        (
            "v2/models/tabular_mlp/infer",
            {
                "inputs": [
                    {"name": "features", "shape": [1, 30], "datatype": "FP64", "data": [0.0] * 30}
                ]
            },
            "expected 'FP32'",
        ),
        (
            "v2/models/digits_cnn/infer",
            {
                "inputs": [
                    {
                        "name": "IMAGE",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": ["bm90IGFuIGltYWdl"],
                    }
                ]
            },
            "cannot decode image",
        ),
    ],
)
def test_torchserve_bad_kserve_bodies_get_400(kserve_torchserve, path, body, message):
    reply = requests.post(f"{kserve_torchserve.inference_url}/{path}", json=body, timeout=30)
    assert reply.status_code == 400 and message in reply.json()["error"], reply.text
    assert "KServe" in reply.json()["error"]


def test_torchserve_form_encoded_body_names_the_content_type(kserve_torchserve):
    """curl -d's default Content-Type: TorchServe decodes the body as a form before the handler."""
    reply = requests.post(
        f"{kserve_torchserve.inference_url}/v1/models/sentiment_lstm:predict",
        timeout=30,
        data=json.dumps({"instances": ["fine"]}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 400 and "Content-Type: application/json" in reply.json()["error"], (
        reply.text
    )


@pytest.fixture(scope="module")
def kserve_triton(bundles, tmp_path_factory):
    tree = bundles[0]["triton"].tree
    workdir = tmp_path_factory.mktemp("tr-kserve")
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        str(tr.wheel_dir() / "bin" / "tritonserver"),
        *tr_kserve.kserve_args(tree, http, grpc),
        # this machine's: the assembled Python backend, loopback, a free metrics port
        f"--backend-directory={tr.assemble_backends(workdir / 'backends')}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        f"--metrics-port={metrics}",
    ]
    server = tr.Triton(workdir, tr.Ports(http, grpc, metrics), None)
    with open(server.log_file, "wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=tr.env(), stdout=log, stderr=subprocess.STDOUT
        )
    server.pid_file.write_text(f"{process.pid}\n")
    try:
        tr.wait_ready(server, tr.repository_models(tree), 240)  # every model, ensembles included
        yield f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_tree_started_with_kserve_args_gives_golden_outputs(kserve_triton, protocol):
    client = TritonClient(kserve_triton[protocol == "grpc"], protocol)
    try:
        for name, spec in SPEC.items():
            data = golden(name)
            outputs = client.infer(
                name,
                {t.name: data[f"input.{t.name}"][:4] for t in spec.inputs},
                spec_datatypes(spec),
            )
            assert_golden(name, outputs, 4)
        png = sorted((REPO / "checkpoints/digits_cnn/requests").glob("digit_*.png"))[0]
        label = client.infer("digits_cnn_ensemble", {"IMAGE": [png.read_bytes()]})["label"]
        assert label.reshape(-1)[0].decode() == png.stem.split("_")[1]
    finally:
        client.close()


def test_native_triton_tree_has_only_native_models_and_checks_offline(tmp_path):
    """The default bundle (onnxruntime, NVIDIA's stock image): tensor models only, each config
    checked against its ONNX file while it is written (a mismatch raises)."""
    made, _ = make_bundles(SPECFILE.models, LAYOUT, [RUNTIMES["triton"]], SPECFILE.kserve, tmp_path)
    configs = [read_config(p) for p in sorted(made[0].tree.glob("*/config.pbtxt"))]
    assert sorted(c.name for c in configs) == sorted(SPEC)
    assert {c.backend for c in configs} == {"onnxruntime"}
    assert all(
        (made[0].tree / c.name / str(SPEC[c.name].version) / "model.onnx").exists() for c in configs
    )


def test_manifests_point_at_each_bundle(bundles):
    made, manifests = bundles
    assert len(manifests) == 6
    for runtime, bundle in made.items():
        isvc, canary, rollback = [
            yaml.safe_load((manifests[0].parent / f"torchship-{runtime}{stage}.yaml").read_text())
            for stage in ("", "-canary", "-rollback")
        ]
        model = isvc["spec"]["predictor"]["model"]
        assert (
            model["modelFormat"]["name"] == bundle.model_format
            and model["runtimeVersion"] == bundle.runtime_version
        )
        assert model["storageUri"].startswith(f"{SPECFILE.kserve.storage_uri}/{runtime}/")
        assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
        assert canary["spec"]["predictor"]["canaryTrafficPercent"] == SPECFILE.kserve.canary_percent
        assert rollback["spec"]["predictor"]["canaryTrafficPercent"] == 0
        assert (
            canary["spec"]["predictor"]["model"] == rollback["spec"]["predictor"]["model"] == model
        )
