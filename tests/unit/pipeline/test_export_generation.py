"""A generation model given as module:Class + checkpoint + tokenizer.json (not a Hugging Face
folder) goes through export: written as the served folder, verified against generate()."""

from __future__ import annotations

import json

import pytest
import torch

from scripts.tasks import task_of
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, SpecError, load_spec
from tests.conftest import TINY_LM_CONFIG, TINY_LM_ENTRY, write_spec, write_tiny_lm


def test_module_checkpoint_and_tokenizer_are_served_as_a_verified_folder(tmp_path):
    write_tiny_lm(tmp_path)
    spec = load_spec(write_spec(tmp_path, TINY_LM_ENTRY)).models[0]
    result = task_of(spec).export(spec, Layout.of(tmp_path), False, print)
    folder = Layout.of(tmp_path).artifact_dir(spec)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {
        p.name for p in (folder / "pretrained").iterdir()
    }
    assert set(result.report["checks"].values()) == {"token ids equal eager generate()"}
    assert task_of(spec).export(spec, Layout.of(tmp_path), False, print).skipped  # incremental


def test_a_module_that_is_not_a_causal_lm_is_refused_by_name(tmp_path):
    write_tiny_lm(tmp_path)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "weights" / "lm.pt")
    kwargs = json.dumps({**TINY_LM_CONFIG, "eos_token_id": 0, "bos_token_id": 0})
    entry = TINY_LM_ENTRY.replace("models.review_gpt:ReviewGPT", "torch.nn:Linear").replace(
        kwargs, '{"in_features": 2, "out_features": 2}'
    )
    spec = load_spec(write_spec(tmp_path, entry)).models[0]
    with pytest.raises(BuildError) as error:
        task_of(spec).export(spec, Layout.of(tmp_path), False, print)
    assert "is not a transformers causal LM" in str(error.value)


def test_a_module_source_needs_its_tokenizer(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "lm.pt").write_bytes(b"")
    entry = TINY_LM_ENTRY.replace("      tokenizer: weights/tokenizer.json\n", "")
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path, entry))
    assert "with checkpoint and tokenizer (a tokenizer.json)" in str(error.value)
