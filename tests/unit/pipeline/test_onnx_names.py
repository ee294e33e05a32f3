"""Graph inputs and outputs get exactly the spec's names, whatever the exporter called the
internal values (an output named `embedding` beside an nn.Embedding attribute used to give
onnxruntime's "Duplicate definition of name (embedding)")."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from scripts.pipeline.layout import Layout
from scripts.pipeline.export import export_model
from scripts.spec import load_spec
from tests.conftest import write_spec

TWO_TOWER = """
  - name: towers
    source: {module: "models.zoo.multi:TwoTower", checkpoint: weights.pt}
    inputs:
      - {name: dense, dtype: float32, shape: [-1, 8]}
      - {name: item_id, dtype: int64, shape: [-1], range: [0, 99]}
    outputs:
      - {name: scores, dtype: float32, shape: [-1, 3]}
      - {name: embedding, dtype: float32, shape: [-1, 16]}
    task: {kind: raw}
    serving: {format: onnx}
    export: {formats: [onnx]}
"""


def test_an_output_named_like_an_internal_value_exports_and_loads(tmp_path, repo_root):
    from models.zoo.multi import TwoTower

    torch.save(TwoTower().state_dict(), tmp_path / "weights.pt")
    spec = load_spec(write_spec(tmp_path, TWO_TOWER)).models[0]
    export_model(spec, Layout.of(tmp_path))  # verified against eager inside
    session = ort.InferenceSession(str(Layout.of(tmp_path).artifact_dir(spec) / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["dense", "item_id"]
    assert [o.name for o in session.get_outputs()] == ["scores", "embedding"]
    scores, embedding = session.run(
        None, {"dense": np.zeros((3, 8), np.float32), "item_id": np.arange(3)}
    )
    assert scores.shape == (3, 3) and embedding.shape == (3, 16)
