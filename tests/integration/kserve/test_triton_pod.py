"""tritonserver started with KServe's arguments on the generated Python-backend Triton tree:
golden answers over v2 HTTP and gRPC, ensembles included."""

from __future__ import annotations

import subprocess

import pytest

from scripts.runtimes.processes import free_port
from scripts.runtimes.triton import kserve as tr_kserve
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton.client import TritonClient, spec_datatypes
from tests.conftest import REPO
from tests.integration.kserve.golden import SPEC, assert_golden, golden

pytestmark = pytest.mark.integration


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


def test_generation_model_streams_on_the_kserve_tree(kserve_triton):
    """review_gpt as a cluster client reaches it: `generate`, `generate_stream` and gRPC
    `ModelStreamInfer` straight on the predictor's ports, tokens equal to eager generate()."""
    from types import SimpleNamespace

    from scripts.measure.verify_generation import golden_generation
    from scripts.runtimes.triton.generation_calls import generation_calls
    from tests.conftest import LAYOUT
    from tests.integration.kserve.golden import SPECFILE

    spec = next(m for m in SPECFILE.models if m.task.generation is not None)
    expected = golden_generation(spec, LAYOUT)
    pod = SimpleNamespace(http_url=kserve_triton[0], grpc_url=kserve_triton[1])
    body = {"prompt": expected["prompts"][0], "max_tokens": expected["max_tokens"]}
    for endpoint, call in generation_calls(pod, spec).items():
        assert call(body)["token_ids"] == expected["token_ids"][0], endpoint
