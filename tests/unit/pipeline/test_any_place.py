"""Any model, any place (issue 32, item 4), without servers: weights kept anywhere on disk are
sealed by their content; a saved graph that calls torchvision's ops loads in a fresh process
(as a server's worker is); one model that cannot be built leaves the others built, named with
its reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from scripts.pipeline import sealed
from scripts.pipeline.ensure import ensure_built
from scripts.pipeline.exporters import export_format, loads_in_a_server
from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import BuildOptions, BuildRow
from scripts.spec import BuildError, load_spec
from tests.any_models import NmsScorer, write_pretrained
from tests.conftest import REPO, TINY_ENTRY, write_spec


# --- sealed by content -----------------------------------------------------------------------


LM_ENTRY = """
  - name: far_lm
    source: {{pretrained: {path}}}
    task: {{kind: generation, generation: {{max_tokens: 4, max_tokens_limit: 8}}}}
"""


def test_a_pretrained_folder_outside_the_repository_is_sealed_by_content(tmp_path):
    repo, elsewhere = tmp_path / "repo", write_pretrained(tmp_path / "elsewhere" / "gpt")
    repo.mkdir()
    spec = load_spec(write_spec(repo, LM_ENTRY.format(path=elsewhere))).models[0]
    layout = Layout.of(repo)
    record = sealed.identity(spec, layout)  # a ValueError (relative_to) before
    assert str(elsewhere / "config.json") in record["files"]
    layout.artifact_dir(spec).mkdir(parents=True)
    sealed.seal(spec, layout)

    # the same files elsewhere, named relative to the spec: the same model
    moved = shutil.copytree(elsewhere, repo / "hf" / "gpt")
    again = load_spec(write_spec(repo, LM_ENTRY.format(path="hf/gpt"))).models[0]
    sealed.refuse_changed(again, layout)
    relative = load_spec(write_spec(repo, LM_ENTRY.format(path="../elsewhere/gpt"))).models[0]
    sealed.refuse_changed(relative, layout)

    (moved / "config.json").write_text((moved / "config.json").read_text() + "\n")
    with pytest.raises(BuildError, match=r"far_lm version 1 .*\(files changed\)"):
        sealed.refuse_changed(again, layout)


def test_a_checkpoint_anywhere_is_sealed_and_old_records_still_compare(tiny_spec, tmp_path):
    far = tmp_path / "elsewhere" / "tiny.pt"
    far.parent.mkdir()
    shutil.copy(tmp_path / "weights" / "tiny.pt", far)
    layout = Layout.of(tmp_path)
    near = load_spec(tiny_spec).models[0]
    # a record as written before content sealing: files named relative to the spec's folder
    layout.artifact_dir(near).mkdir(parents=True)
    old = sealed.identity(near, layout)
    assert "weights/tiny.pt" in old["files"]
    layout.artifact(near).record.write_text(json.dumps(old))
    entry = TINY_ENTRY.format(name="tiny", formats="torchscript").replace(
        "weights/tiny.pt", str(far)
    )
    spec = load_spec(write_spec(tmp_path, entry)).models[0]
    sealed.refuse_changed(spec, layout)  # same content, absolute path outside: not a change
    torch.save({k: v + 1 for k, v in torch.load(far).items()}, far)
    with pytest.raises(BuildError, match="files changed"):
        sealed.refuse_changed(spec, layout)


# --- torchvision's ops in a fresh process ----------------------------------------------------


FRESH = """
import sys
import numpy as np
from handlers.runners import load_runner
run = load_runner(sys.argv[1], sys.argv[2], ["x"])
print(run({"x": np.ones((3, 16), np.float32)})[0].shape)
"""


def load_in_a_fresh_process(fmt: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FRESH), fmt, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_torchscript_calling_torchvision_ops_loads_in_a_fresh_process(tmp_path):
    from handlers.runners import op_namespaces

    torch.manual_seed(0)
    path = tmp_path / "model.torchscript.pt"
    torch.jit.trace(NmsScorer().eval(), (torch.randn(2, 16),)).save(str(path))
    assert op_namespaces(str(path)) == {"torchvision"}
    loaded = load_in_a_fresh_process("torchscript", path)  # "Unknown builtin op" before
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "(3, 8)"
    loads_in_a_server("torchscript", path)


LIBRARY = torch.library.Library("torchship_nowhere", "DEF")  # no package of that name exists
LIBRARY.define("twice(Tensor x) -> Tensor")
LIBRARY.impl("twice", lambda x: x * 2, "CompositeExplicitAutograd")


class CallsAnUnknownOp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchship_nowhere.twice(x)


def test_a_format_no_server_could_load_is_refused_at_export(tiny_spec, tmp_path):
    spec = load_spec(tiny_spec).models[0]
    path = tmp_path / "model.torchscript.pt"
    with pytest.raises(BuildError) as refused:
        export_format(spec, "torchscript", CallsAnUnknownOp(), (torch.ones(2, 30),), path)
    message = refused.value.problems[0]
    assert message.startswith("tiny: torchscript export failed: RuntimeError: a server could")
    assert "torchship_nowhere" in message and "install" in message


# --- one model that cannot be built ----------------------------------------------------------


def three_models(tmp_path: Path) -> list:
    """tiny and tiny2 build; broken's checkpoint does not fit its class (hidden 8, not 16)."""
    from models.tabular import TabularMLP

    shutil.copy(tmp_path / "weights" / "tiny.pt", tmp_path / "weights" / "tiny2.pt")
    torch.save(TabularMLP(30, 8).state_dict(), tmp_path / "weights" / "broken.pt")
    entries = "".join(
        TINY_ENTRY.format(name=name, formats="torchscript") for name in ("tiny", "broken", "tiny2")
    )
    return load_spec(write_spec(tmp_path, entries)).models


def test_one_model_that_cannot_be_exported_leaves_the_others_built(tiny_spec, tmp_path):
    models, layout = three_models(tmp_path), Layout.of(tmp_path)
    built = ensure_built(models, layout, through="export", keep_going=True)
    assert [r.name for r in built.exported] == ["tiny", "tiny2"]
    assert list(built.failed) == ["broken"]
    assert built.failed["broken"].startswith("broken: source.checkpoint weights/broken.pt does ")
    assert "fix source.kwargs or the checkpoint" in built.failed["broken"]
    with pytest.raises(BuildError, match="broken: source.checkpoint"):  # without: it stops
        ensure_built(models, layout, through="export")


@dataclass
class RefusesOne:
    """A runtime's artifact builder that cannot package one model (as a .mar whose handler
    cannot load it), and records what it was asked to package."""

    refused: str
    asked: list

    def build(self, specs, layout, options) -> list[BuildRow]:
        self.asked += [s.name for s in specs]
        if any(s.name == self.refused for s in specs):
            raise BuildError(f"{self.refused}.mar: the handler cannot load it")
        return [BuildRow(s.name, "archived", "-") for s in specs]


@dataclass
class Runtime:
    artifacts: RefusesOne
    name: str = "fake"
    title: str = "Fake"


def test_one_model_that_cannot_be_packaged_leaves_the_others_packaged(tiny_spec, tmp_path):
    entries = "".join(TINY_ENTRY.format(name=n, formats="torchscript") for n in ("tiny", "b", "c"))
    for name in ("b", "c"):
        shutil.copy(tmp_path / "weights" / "tiny.pt", tmp_path / "weights" / f"{name}.pt")
    models = load_spec(write_spec(tmp_path, entries)).models
    runtime = Runtime(RefusesOne("b", []))
    options = BuildOptions(out=tmp_path / "scratch")  # a scratch folder: nothing to sign
    built = ensure_built(models, Layout.of(tmp_path), [runtime], options=options, keep_going=True)
    assert [r.model for r in built.packaged["fake"]] == ["tiny", "c"]
    assert built.failed == {"b": "Fake: b.mar: the handler cannot load it"}
    assert runtime.artifacts.asked == ["tiny", "b", "c"]


def test_serve_serves_the_models_that_built_and_names_the_one_that_did_not(
    tiny_spec, tmp_path, monkeypatch
):
    """`serve` builds every runtime's artifacts, starts the servers on the models that built
    (the start itself is the integration tests'), then exits 1 naming the broken one."""
    from typer.testing import CliRunner

    from scripts.cli import app, common

    three_models(tmp_path)  # rewrites tiny_spec's models.yaml
    monkeypatch.setitem(common.OUTPUT, "out", None)  # --out below: not for the tests after
    started = []
    monkeypatch.setattr(
        "scripts.runtimes.serving.serve_runtimes",
        lambda runtime, models, layout, timeout: started.extend(m.name for m in models) or [],
    )
    monkeypatch.setattr("scripts.rollout.flow.restore", lambda *args: [])
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["--out", str(out), "serve", "--spec", str(tiny_spec)])
    assert done.exit_code == 1, done.output
    assert started == ["tiny", "tiny2"]
    assert "broken: source.checkpoint weights/broken.pt does not fit" in done.output
    assert (out / "model_store" / "tiny2.mar").exists()
    assert (out / "triton_repo" / "tiny2" / "config.pbtxt").exists()
    # a line for each model and step as it starts: a log shows what the build is doing
    for line in ("export tiny ...", "export broken ...", "export tiny2 ...", "package TorchServe"):
        assert line in done.output, done.output
