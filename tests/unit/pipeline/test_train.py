"""Training is deterministic: the same spec and seed give bit-identical weights."""

from __future__ import annotations

import json

import torch

from scripts.pipeline.layout import Layout
from scripts.pipeline.train import train_model
from scripts.spec import load_spec
from tests.conftest import REPO


def quick_tabular_spec():
    spec = load_spec(REPO / "models.yaml").select(["tabular_mlp"])[0]
    return spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": 2})})


def test_same_seed_same_weights_and_metrics(tmp_path):
    spec = quick_tabular_spec()
    results = []
    for run in ("a", "b"):
        root = tmp_path / run
        result = train_model(spec, Layout.of(root))
        weights = torch.load(root / spec.source.checkpoint, weights_only=True)
        results.append((weights, result.metrics))
        stats = json.loads((root / "checkpoints/tabular_mlp/standardize.json").read_text())
        assert len(stats["mean"]) == len(stats["std"]) == 30
        assert (root / "checkpoints/tabular_mlp/samples.npz").exists()
        assert list((root / "checkpoints/tabular_mlp/requests").glob("*.json"))
    (w1, m1), (w2, m2) = results
    assert w1.keys() == w2.keys()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert m1 == m2 and m1["held_out_accuracy"] > 0.8


def test_second_run_is_skipped_until_the_spec_changes(tmp_path):
    spec = quick_tabular_spec()
    assert not train_model(spec, Layout.of(tmp_path)).skipped
    assert train_model(spec, Layout.of(tmp_path)).skipped
    changed = spec.model_copy(update={"training": spec.training.model_copy(update={"seed": 1})})
    assert not train_model(changed, Layout.of(tmp_path)).skipped


def test_editing_a_data_file_the_spec_lists_retrains(tmp_path):
    from scripts.pipeline.train import train_fingerprint
    from scripts.spec import load_spec
    from tests.conftest import REPO

    spec = next(m for m in load_spec(REPO / "models.yaml").models if m.name == "sentiment_lstm")
    (tmp_path / "models" / "data" / "sentiment").mkdir(parents=True)
    data = tmp_path / "models" / "data" / "sentiment" / "reviews.tsv"
    data.write_text("1\tgreat\n")
    before = train_fingerprint(spec, Layout.of(tmp_path))
    data.write_text("1\tgreat\n0\tawful\n")
    assert train_fingerprint(spec, Layout.of(tmp_path)) != before
