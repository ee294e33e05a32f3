"""TorchServe started with KServe's command line on the generated TorchServe tree: golden
answers over v1 and v2, v1 equal to the handler's own route, 400s for bad KServe bodies."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from scripts.runtimes.processes import free_port
from scripts.runtimes.torchserve import kserve as ts_kserve
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.triton.client import spec_datatypes
from tests.conftest import REPO
from tests.integration.kserve.golden import SPEC, assert_golden, golden

pytestmark = pytest.mark.integration
PORT_KEYS = (
    "inference_address",
    "management_address",
    "metrics_address",
    "grpc_inference_port",
    "grpc_management_port",
)


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
    assert changed <= {*PORT_KEYS, "model_store", "allowed_urls", "metrics_config"}, changed
    return text


@pytest.fixture(scope="module")
def kserve_torchserve(bundles, tmp_path_factory):
    # a copy: the pod's config is rewritten in place, the bundle's tree stays as written
    tree = shutil.copytree(
        bundles[0]["torchserve"].tree, tmp_path_factory.mktemp("ts-tree") / "tree"
    )
    ports = ts.Ports(*(free_port() for _ in range(5)))
    config = tree / "config" / "config.properties"
    config.write_text(as_kserve_pod(config, tree, ports))
    server = ts.TorchServe(tmp_path_factory.mktemp("ts-kserve"), ports)
    for folder in (server.temp, server.workdir / "logs"):
        folder.mkdir(parents=True)
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
