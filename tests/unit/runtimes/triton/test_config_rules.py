"""Every config.pbtxt is checked against the rules tritonserver applies before a server sees
it; a broken one is one line naming the model, the field and the fix."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import BuildOptions
from scripts.runtimes.triton.config_rules import config_problems
from scripts.runtimes.triton.configs import read_config, write_config
from scripts.runtimes.triton.runtime import TRITON
from scripts.spec import BuildError
from tests.conftest import REPO

FP32 = mc.DataType.Value("TYPE_FP32")


def config(**fields) -> mc.ModelConfig:
    base = mc.ModelConfig(name="m", max_batch_size=8, backend="python")
    base.input.add(name="x", data_type=FP32, dims=[4])
    base.output.add(name="y", data_type=FP32, dims=[2])
    base.MergeFrom(mc.ModelConfig(**fields))
    return base


def test_a_per_sample_scalar_is_dims_1_with_an_empty_reshape(tmp_path, built_zoo):
    spec = built_zoo("zoo_two_tower")
    TRITON.artifacts.build([spec], Layout.of(REPO), BuildOptions(out=tmp_path))
    written = read_config(tmp_path / spec.name / "config.pbtxt")
    item_id = next(t for t in written.input if t.name == "item_id")
    assert (
        list(item_id.dims) == [1]
        and item_id.HasField("reshape")
        and list(item_id.reshape.shape) == []
    )
    assert list(written.model_warmup[0].inputs["item_id"].dims) == [1]
    assert config_problems(written) == []


def test_a_valid_config_has_no_problems():
    assert config_problems(config(), ["x"], ["y"]) == []


@pytest.mark.parametrize(
    "broken, expected",
    [
        (
            lambda c: c.input[0].ClearField("dims"),
            "input 'x': dims missing (a per-sample scalar needs dims: [1]",
        ),
        (
            lambda c: c.output.add(name="y", data_type=FP32, dims=[1]),
            "output name 'y' is used twice",
        ),
        (lambda c: c.input[0].dims.append(0), "dims [4, 0] must be positive or -1"),
        (
            lambda c: (c.ClearField("max_batch_size"), c.dynamic_batching.SetInParent()),
            "dynamic_batching with max_batch_size 0",
        ),
        (
            lambda c: c.dynamic_batching.preferred_batch_size.append(16),
            "preferred_batch_size [16] above max_batch_size 8",
        ),
        (
            lambda c: c.input[0].reshape.shape.extend([3]),
            "reshape [3] holds a different number of elements",
        ),
        (
            lambda c: c.model_warmup.add(name="w").inputs["x"].dims.extend([5]),
            "warmup 'w': 'x' dims [5] do not fit",
        ),
        (
            lambda c: c.input[0].__setattr__("name", "z"),
            "input names ['z'] differ from the artifact's ['x']",
        ),
    ],
)
def test_each_rule_names_model_field_and_fix(broken, expected):
    c = config()
    broken(c)
    problems = config_problems(c, ["x"], ["y"])
    assert any(p.startswith("triton model m: ") and expected in p for p in problems), problems


def test_a_broken_config_is_never_written(tmp_path):
    c = config()
    c.input[0].ClearField("dims")
    with pytest.raises(BuildError, match="dims missing"):
        write_config(c, tmp_path)
    assert not (tmp_path / "config.pbtxt").exists()
