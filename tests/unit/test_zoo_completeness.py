"""The conformance zoo covers what it claims: every entry says what it proves (the table in
docs/models.md), every dtype the spec knows is served by some entry, and every pattern of the issue
has an entry."""

from __future__ import annotations

from handlers.preprocessing.dtypes import DTYPES
from scripts.spec import load_spec
from tests.conftest import REPO, ZOO_SPEC

ZOO = load_spec(ZOO_SPEC).models
# Each entry and the pattern it proves; a new entry needs a line here (and in docs/models.md's
# table).
PROVES = {
    "zoo_resnet18": "torchvision CNN, 3-channel 224x224 image bytes with per-channel normalisation",
    "zoo_mobilenet_v3_small": (
        "torchvision CNN with hardswish/squeeze-excite, image bytes and tensors"
    ),
    "zoo_tiny_bert": (
        "transformers encoder from raw text via tokenizer.json; "
        "input_ids + attention_mask padded per batch"
    ),
    "zoo_text_embedder": (
        "task kind embedding from raw text: a mean-pooled encoder answering one vector per "
        "sentence, also at OpenAI's /v1/embeddings"
    ),
    "zoo_two_tower": (
        "two inputs incl. a per-sample scalar [-1], two tuple outputs, "
        "an output named like a module"
    ),
    "zoo_mixed_dtypes": "every dtype in and a dict of float16/bool/int32/float32 outputs",
    "zoo_sequence_gru": "a dynamic non-batch axis: sequences of any length, batched per length",
    "zoo_mlp_784": "the seed's MLP 784-64-64-10, every export format, int8 served on both runtimes",
    "zoo_mlp_100": "the seed's MLP 100-50-10 with max_batch_size 0 (never batched)",
    "zoo_large_mlp": "over 100 MB of weights",
    "zoo_positive_values": (
        "an output whose length depends on the input's values, served unbatched; formats: auto"
    ),
    "zoo_ssdlite": (
        "torchvision detector without a batch axis ([3, 320, 320] in, N detections out), from "
        "image bytes and tensors; formats: auto"
    ),
    "zoo_traced_tagger": (
        "handed over only as a traced TorchScript file; one sequence [time, 4], no batch axis"
    ),
    "zoo_gpt2_small": "a language model at GPT-2 small's size (124M parameters), streamed",
}


def test_every_zoo_entry_says_what_it_proves():
    assert sorted(m.name for m in ZOO) == sorted(PROVES)


def test_the_docs_table_lists_every_zoo_entry():
    table = (REPO / "docs" / "models.md").read_text()
    assert [name for name in PROVES if f"| `{name}` |" not in table] == []


def test_every_dtype_is_served_by_some_zoo_entry():
    used = {t.dtype for m in ZOO for t in [*m.inputs, *m.outputs] if m.task.generation is None}
    assert set(DTYPES) <= used, f"no zoo entry uses {sorted(set(DTYPES) - used)}"


def test_the_zoo_covers_each_pattern():
    assert any(len(m.inputs) > 1 and len(m.outputs) > 1 for m in ZOO)
    assert any(len(t.shape) == 1 for m in ZOO for t in m.inputs)  # per-sample scalar
    assert any(-1 in t.shape[1:] for m in ZOO for t in m.inputs)  # dynamic non-batch axis
    assert any(m.batching.max_batch_size == 0 for m in ZOO)
    assert any(m.serving.format == "onnx_int8" for m in ZOO)  # int8 served
    assert any(
        m.export.auto and m.batching.max_batch_size == 0 for m in ZOO
    )  # data-dependent length
    assert any(m.task.preprocess.kind == "image" and not m.task.preprocess.grayscale for m in ZOO)
    assert any((m.source.module or "").startswith("models.zoo.vision") for m in ZOO)
    assert any(m.inputs[0].shape[0] != -1 for m in ZOO)  # no batch axis, a fixed first axis
    assert any(m.source.is_torchscript for m in ZOO)  # only a TorchScript file
    assert any(
        m.task.preprocess.kind == "tokenizer" and m.batching.pad for m in ZOO
    )  # text, padded
    sizes = {m.name: m.source.kwargs.get("sizes") for m in ZOO}
    assert [784, 64, 64, 10] in sizes.values() and [100, 50, 10] in sizes.values()
