"""onnx_int8: quantised from the ONNX export, kept only behind the accuracy gate."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from scripts.pipeline.layout import Layout
from scripts.pipeline.export import export_model
from scripts.pipeline.paths import exported_formats
from scripts.spec import BuildError, load_spec
from tests.conftest import REPO, write_spec

OUTLIER = """
  - name: outlier
    source: {module: "models.zoo.quantization:OutlierLinear", checkpoint: outlier.pt}
    inputs:
      - {name: features, dtype: float32, shape: [-1, 16]}
    outputs:
      - {name: logits, dtype: float32, shape: [-1, 4]}
    task: {kind: classification, labels: labels.txt}
    serving: {format: onnx}
    export: {formats: [onnx, onnx_int8]}
"""


def test_a_layer_int8_ruins_trips_the_gate_naming_metric_and_values(tmp_path):
    from models.zoo.quantization import OutlierLinear

    torch.manual_seed(0)
    torch.save(OutlierLinear().state_dict(), tmp_path / "outlier.pt")
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    spec = load_spec(write_spec(tmp_path, OUTLIER)).models[0]
    with pytest.raises(
        BuildError,
        match=r"outlier: onnx_int8 fails its accuracy gate: top-1 agreement with fp32 "
        r"1\.0000 \(fp32\) vs 0\.\d+ \(int8\), a drop of [\d.]+ points > the limit 1",
    ):
        export_model(spec, Layout.of(tmp_path))
    assert not (Layout.of(tmp_path).artifact_dir(spec) / "model.int8.onnx").exists()


def test_a_classifier_with_training_data_is_gated_on_held_out_accuracy(tmp_path, built_examples):
    """tabular_mlp copied into a scratch root: int8 keeps its held-out accuracy within a point."""
    for folder in ("checkpoints/tabular_mlp", "models/labels"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    spec = next(m for m in load_spec(REPO / "models.yaml").models if m.name == "tabular_mlp")
    spec = spec.model_copy(
        update={
            "export": spec.export.model_copy(update={"formats": ["onnx", "onnx_int8"]}),
            "serving": spec.serving.model_copy(update={"format": "onnx_int8"}),
        }
    )
    report = export_model(spec, Layout.of(tmp_path)).report
    gate = report["int8"]["gate"]
    assert gate["metric"] == "held-out accuracy" and gate["passed"] and gate["fp32"] > 0.9
    assert (
        report["int8"]["method"] == "dynamic"
        and report["int8"]["bytes"] < report["int8"]["fp32_bytes"]
    )
    assert exported_formats(spec, Layout.of(tmp_path)) == ["onnx", "onnx_int8"]
    assert (
        json.loads((Layout.of(tmp_path).artifact_dir(spec) / "verify.json").read_text())["int8"]
        == report["int8"]
    )


def test_int8_needs_the_onnx_export(tmp_path):
    from models.zoo.quantization import OutlierLinear

    torch.save(OutlierLinear().state_dict(), tmp_path / "outlier.pt")
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    with pytest.raises(Exception, match="onnx_int8 is quantised from the ONNX export; add onnx"):
        load_spec(
            write_spec(
                tmp_path,
                OUTLIER.replace("[onnx, onnx_int8]", "[torchscript, onnx_int8]").replace(
                    "format: onnx", "format: torchscript"
                ),
            )
        )
