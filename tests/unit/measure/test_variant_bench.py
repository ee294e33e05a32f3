"""`make bench-generation VERSIONS=1,3`: versions side by side, each over the first, per setup;
and each version deployed alone in the bench's scratch repository."""

from __future__ import annotations

from scripts.measure import variant_bench
from scripts.runtimes.triton.configs import read_config
from scripts.runtimes.triton.stock import copy_model

# what `make triton-repo` writes for a generation model, cut to what the copy reads
CONFIG = """max_batch_size: 0
name: "review_gpt"
version_policy { specific { versions: 1 } }
backend: "python"
input { name: "text_input" data_type: TYPE_STRING dims: 1 }
output { name: "text_output" data_type: TYPE_STRING dims: -1 }
model_transaction_policy { decoupled: true }
"""


def points(one: float, sixteen: float) -> dict:
    return {
        c: {"tokens_per_s": rate, "ttft_p50_ms": 20.0, "failed": 0}
        for c, rate in ((1, one), (16, sixteen))
    }


def report() -> dict:
    return {
        "model": "m",
        "versions": {1: {"format": "pretrained"}, 3: {"format": "pretrained_int8"}},
        "in_process": {1: {1: 40.0, 16: 260.0}, 3: {1: 80.0, 16: 520.0}},
        "served": {"triton": {1: points(38.0, 170.0), 3: points(76.0, 255.0)}},
    }


def test_every_version_is_compared_with_the_first_on_the_same_setup():
    measured = report()
    ratios = variant_bench.ratios(measured, [1, 3])
    assert ratios["in_process"] == {1: {1: 1.0, 16: 1.0}, 3: {1: 2.0, 16: 2.0}}
    assert ratios["triton"][3] == {1: 2.0, 16: 1.5}
    measured["ratios"] = ratios
    lines = variant_bench.table(measured)
    assert "| triton | 3 | pretrained_int8 | 76 (2.00x) | 255 (1.50x) | 20.0 | 0 |" in lines
    assert "| in process | 3 | pretrained_int8 | 80 (2.00x) | 520 (2.00x) | | |" in lines


def test_a_later_version_is_copied_alone_with_a_config_that_serves_it(tmp_path):
    built = tmp_path / "built" / "review_gpt"
    built.mkdir(parents=True)
    (built / "config.pbtxt").write_text(CONFIG)
    for version in ("1", "3"):
        (built / version).mkdir()
    copy_model(built, tmp_path / "repo" / "review_gpt", "3")
    copied = tmp_path / "repo" / "review_gpt"
    assert sorted(p.name for p in copied.iterdir() if p.is_dir()) == ["3"]
    assert list(read_config(copied / "config.pbtxt").version_policy.specific.versions) == [3]
