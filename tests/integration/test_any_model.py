"""Any model, any place (issue 32, item 4), through the commands a user runs, each step its own
process as under `make`: a Hugging Face folder kept outside the spec's repository, and a
TorchScript detector that calls torchvision's NMS op exported with `formats: auto`, go through
export + verify, archive and triton-repo; a spec with one broken model builds the other two,
names the broken one with its reason and exits non-zero."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.any_models import NmsScorer, write_pretrained
from tests.conftest import REPO, TINY_ENTRY, write_spec

pytestmark = pytest.mark.integration


def step(out: Path, spec: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m scripts --out OUT <step> --spec SPEC`: what `make <step> SPEC= OUT=` runs."""
    return subprocess.run(
        [sys.executable, "-m", "scripts", "--out", str(out), *args, "--spec", str(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def passes(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


LM_ENTRY = """
  - name: far_lm
    source: {{pretrained: {path}}}
    task: {{kind: generation, generation: {{max_tokens: 4, max_tokens_limit: 8}}}}
"""


def test_a_hugging_face_folder_kept_elsewhere_is_exported_archived_and_put_in_triton(tmp_path):
    repo, out = tmp_path / "repo", tmp_path / "out"
    elsewhere = write_pretrained(tmp_path / "elsewhere" / "gpt")  # where downloads are kept
    repo.mkdir()
    spec = write_spec(repo, LM_ENTRY.format(path=elsewhere))
    assert "far_lm" in passes(step(out, spec, "export"))  # a relative_to ValueError before
    assert (out / "artifacts" / "far_lm" / "1" / "pretrained" / "model.safetensors").exists()
    record = json.loads((out / "artifacts" / "far_lm" / "1" / "version.json").read_text())
    assert str(elsewhere / "model.safetensors") in record["files"]
    passes(step(out, spec, "archive"))  # the handler loads it and answers a prompt
    assert (out / "model_store" / "far_lm.mar").exists()
    passes(step(out, spec, "triton-repo"))
    assert (out / "triton_repo" / "far_lm" / "config.pbtxt").exists()
    # the same folder named relative to the spec (outside it): sealed by content, not refused
    passes(step(out, write_spec(repo, LM_ENTRY.format(path="../elsewhere/gpt")), "export"))


DETECTOR_ENTRY = """
  - name: far_detector
    source: {module: "tests.any_models:NmsScorer", checkpoint: weights/detector.pt}
    inputs:
      - {name: x, dtype: float32, shape: [-1, 16]}
    outputs:
      - {name: scores, dtype: float32, shape: [-1, 8]}
    task: {kind: raw}
    batching: {max_batch_size: 4}
    export: {formats: auto}
"""


def test_a_torchscript_detector_with_torchvision_ops_is_archived_and_put_in_triton(tmp_path):
    repo, out = tmp_path / "repo", tmp_path / "out"
    (repo / "weights").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(NmsScorer().state_dict(), repo / "weights" / "detector.pt")
    spec = write_spec(repo, DETECTOR_ENTRY)
    passes(step(out, spec, "export"))
    built = json.loads((out / "artifacts" / "far_detector" / "1" / "build.json").read_text())
    assert "torchscript" in built["formats"], built  # what it serves without serving.format
    # a fresh process that never imported the model's code: "Unknown builtin op" before
    listed = passes(step(out, spec, "archive"))
    assert "far_detector" in listed and (out / "model_store" / "far_detector.mar").exists()
    passes(step(out, spec, "triton-repo"))
    assert (out / "triton_repo" / "far_detector" / "config.pbtxt").exists()


@pytest.mark.parametrize("runtime", ["torchserve", "triton"])
def test_the_detector_answers_its_golden_outputs_on_a_real_server(runtime, tmp_path):
    """Served where nothing imported the model's code: TorchServe's worker loads the
    TorchScript file (torchvision::nms), Triton's Python backend the ONNX export."""
    import numpy as np

    from scripts.pipeline.ensure import ensure_built
    from scripts.pipeline.layout import Layout
    from scripts.runtimes.protocols import StartOptions
    from scripts.runtimes.registry import RUNTIMES
    from scripts.spec import load_spec

    (tmp_path / "weights").mkdir()
    torch.manual_seed(0)
    torch.save(NmsScorer().state_dict(), tmp_path / "weights" / "detector.pt")
    models, layout = load_spec(write_spec(tmp_path, DETECTOR_ENTRY)).models, Layout.of(tmp_path)
    plugin = RUNTIMES[runtime]
    ensure_built(models, layout, [plugin])
    golden = np.load(layout.artifact_dir(models[0]) / "golden.npz")
    options = StartOptions(workdir=tmp_path / "server", free_ports=True, timeout_s=180)
    server = plugin.server.start(models, layout, options)
    try:
        for call in plugin.endpoints.tensor_endpoints(server).values():
            answer = call(models[0], {"x": golden["input.x"]})["scores"]
            np.testing.assert_allclose(answer, golden["output.scores"], rtol=1e-4, atol=1e-5)
    finally:
        plugin.server.stop(server.workdir)


def test_one_broken_model_is_named_and_the_other_two_are_built(tiny_spec, tmp_path):
    from models.tabular import TabularMLP

    out = tmp_path / "out"
    shutil.copy(tmp_path / "weights" / "tiny.pt", tmp_path / "weights" / "tiny2.pt")
    torch.save(TabularMLP(30, 8).state_dict(), tmp_path / "weights" / "broken.pt")  # not 16
    entries = "".join(
        TINY_ENTRY.format(name=name, formats="torchscript, onnx")
        for name in ("tiny", "broken", "tiny2")
    )
    spec = write_spec(tmp_path, entries)
    for command, built in (("archive", "model_store/{}.mar"), ("triton-repo", "triton_repo/{}")):
        done = step(out, spec, command)
        assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert errors[0].startswith("error: broken: source.checkpoint weights/broken.pt does not")
        assert "fix source.kwargs or the checkpoint" in errors[0]
        assert errors[-1] == "error: not built: broken (the others were)"
        for name in ("tiny", "tiny2"):
            assert (out / built.format(name)).exists(), done.stdout
            assert name in done.stdout
        assert not (out / built.format("broken")).exists()
