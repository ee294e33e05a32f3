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
import torchvision
from torch import nn

from scripts.pipeline import sealed
from scripts.pipeline.ensure import ensure_built
from scripts.pipeline.exporters import export_format, loads_in_a_server
from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import BuildOptions, BuildRow
from scripts.spec import BuildError, load_spec
from tests.conftest import REPO, TINY_ENTRY, TINY_LM_CONFIG, write_spec


# --- sealed by content -----------------------------------------------------------------------


def write_pretrained(folder: Path) -> Path:
    """A tiny GPT-2 Hugging Face folder as save_pretrained writes it, with a tokenizer.json."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from models.review_gpt import train_tokenizer

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    config = GPT2Config(**TINY_LM_CONFIG, eos_token_id=0, bos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer = train_tokenizer(["the battery lasts all day.", "this film is great."] * 30, 300)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


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
    (layout.artifact_dir(near) / sealed.RECORD).write_text(json.dumps(old))
    entry = TINY_ENTRY.format(name="tiny", formats="torchscript").replace(
        "weights/tiny.pt", str(far)
    )
    spec = load_spec(write_spec(tmp_path, entry)).models[0]
    sealed.refuse_changed(spec, layout)  # same content, absolute path outside: not a change
    torch.save({k: v + 1 for k, v in torch.load(far).items()}, far)
    with pytest.raises(BuildError, match="files changed"):
        sealed.refuse_changed(spec, layout)


# --- torchvision's ops in a fresh process ----------------------------------------------------


class NmsScorer(nn.Module):
    """A detector's tail: scores per anchor, kept by torchvision's batched NMS (torchvision::nms
    in the saved graph), zero where suppressed. Fixed shapes out, a batch axis."""

    def __init__(self, anchors: int = 8):
        super().__init__()
        self.anchors = anchors
        self.head = nn.Linear(16, anchors * 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(x).view(x.shape[0], self.anchors, 5)
        corner = out[..., :2].sigmoid() * 10
        boxes = torch.cat([corner, corner + out[..., 2:4].sigmoid() * 5 + 1], dim=-1)
        scores = out[..., 4].sigmoid()
        batch = torch.arange(x.shape[0]).unsqueeze(1).expand_as(scores).reshape(-1)
        keep = torchvision.ops.batched_nms(boxes.reshape(-1, 4), scores.reshape(-1), batch, 0.3)
        kept = torch.zeros_like(scores).reshape(-1).index_fill(0, keep, 1.0)
        return scores * kept.view_as(scores)


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
