"""A generation model given as module:Class + checkpoint + tokenizer.json (not a Hugging Face
folder) goes through export: written as the served folder, verified against generate()."""

from __future__ import annotations

import json

import pytest
import torch

from scripts.pipeline.export import export_model
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, SpecError, load_spec
from tests.conftest import write_spec

CONFIG = {"vocab_size": 300, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4}
ENTRY = f"""
  - name: own_lm
    source:
      module: models.review_gpt:ReviewGPT
      checkpoint: weights/lm.pt
      tokenizer: weights/tokenizer.json
      kwargs: {json.dumps({**CONFIG, "eos_token_id": 0, "bos_token_id": 0})}
    task: {{kind: generation, generation: {{max_tokens: 6, max_tokens_limit: 16}}}}
"""


def save_tokenizer(path):
    from models.review_gpt import train_tokenizer

    tokenizer = train_tokenizer(["the battery lasts all day.", "this film is great."] * 30, 300)
    tokenizer.save(str(path))


def test_module_checkpoint_and_tokenizer_are_served_as_a_verified_folder(tmp_path):
    from models.review_gpt import ReviewGPT

    (tmp_path / "weights").mkdir()
    save_tokenizer(tmp_path / "weights" / "tokenizer.json")
    torch.manual_seed(0)
    torch.save(ReviewGPT(**CONFIG).state_dict(), tmp_path / "weights" / "lm.pt")
    spec = load_spec(write_spec(tmp_path, ENTRY)).models[0]
    result = export_model(spec, Layout.of(tmp_path))
    folder = Layout.of(tmp_path).artifact_dir(spec)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {
        p.name for p in (folder / "pretrained").iterdir()
    }
    assert set(result.report["checks"].values()) == {"token ids equal eager generate()"}
    assert export_model(spec, Layout.of(tmp_path)).skipped  # incremental


def test_a_module_that_is_not_a_causal_lm_is_refused_by_name(tmp_path):
    (tmp_path / "weights").mkdir()
    save_tokenizer(tmp_path / "weights" / "tokenizer.json")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "weights" / "lm.pt")
    entry = ENTRY.replace("models.review_gpt:ReviewGPT", "torch.nn:Linear").replace(
        json.dumps({**CONFIG, "eos_token_id": 0, "bos_token_id": 0}),
        '{"in_features": 2, "out_features": 2}',
    )
    spec = load_spec(write_spec(tmp_path, entry)).models[0]
    with pytest.raises(BuildError) as error:
        export_model(spec, Layout.of(tmp_path))
    assert "is not a transformers causal LM" in str(error.value)


def test_a_module_source_needs_its_tokenizer(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "lm.pt").write_bytes(b"")
    entry = ENTRY.replace("      tokenizer: weights/tokenizer.json\n", "")
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path, entry))
    assert "with checkpoint and tokenizer (a tokenizer.json)" in str(error.value)
