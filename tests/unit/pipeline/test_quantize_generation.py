"""A language model's int8 format: every Linear int8 with each row on its own scale (so a
sequence's tokens never depend on its batch), built and verified like fp32, behind a gate that
measures perplexity and agreement and will not judge a model that has not learned."""

from __future__ import annotations

import json

import pytest
import torch

from handlers.engines.completions import LanguageModel
from handlers.formats import folder_format
from handlers.formats.int8_linear import RowScaledInt8Linear, int8_linear
from scripts.pipeline.layout import Layout
from scripts.pipeline.quantize_generation import gate_int8
from scripts.spec import BuildError, load_spec
from scripts.tasks import task_of
from tests.conftest import TINY_LM_ENTRY, write_spec, write_tiny_lm
from tests.unit.handlers.conftest import LIMITS as HANDLER_LIMITS

INT8 = folder_format("pretrained_int8")
LIMITS = HANDLER_LIMITS.model_copy(update={"end_token": 0})  # the tiny GPT-2's own is 50256


def test_an_int8_row_gives_the_same_output_alone_and_in_any_batch():
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 40)
    # rows of very different sizes: one scale per batch would quantise the small ones coarsely
    rows = torch.randn(9, 48) * torch.logspace(-3, 2, 9)[:, None]
    rows[4] = 0
    int8 = RowScaledInt8Linear(layer)
    with torch.inference_mode():
        together = int8(rows)
        alone = torch.cat([int8(rows[i : i + 1]) for i in range(len(rows))])
        shuffled = int8(rows.flip(0)).flip(0)
        exact = layer(rows)
    assert torch.equal(together, alone) and torch.equal(together, shuffled)
    assert torch.equal(together[4], layer.bias.detach())  # an all-zero row: the bias
    error = (together - exact).norm(dim=1) / exact.norm(dim=1)
    assert float(error.max()) < 0.05  # every row, the smallest included


def test_a_layer_to_keep_fp32_must_be_a_linear_layer_of_the_model(folder):
    assert isinstance(INT8.load_causal_lm(folder).lm_head, RowScaledInt8Linear)  # no recipe
    with pytest.raises(ValueError, match=r"\['lm_haed'\] are not Linear layers"):
        int8_linear(folder_format("pretrained").load_causal_lm(folder), ["lm_haed"])
    kept = int8_linear(folder_format("pretrained").load_causal_lm(folder), ["lm_head"])
    assert isinstance(kept.lm_head, torch.nn.Linear)
    assert isinstance(kept.transformer.h[0].mlp.c_fc, RowScaledInt8Linear)


def test_without_held_out_texts_int8_is_served_only_when_asked_for(tmp_path):
    write_tiny_lm(tmp_path)
    entry = TINY_LM_ENTRY + "    serving: {format: pretrained_int8}\n"
    spec = load_spec(write_spec(tmp_path, entry)).models[0]
    with pytest.raises(BuildError, match="cannot judge quality: no held-out texts"):
        task_of(spec).export(spec, Layout.of(tmp_path), False, print)

    entry += "    quantize: {allow_unjudged: true}\n"
    spec = load_spec(write_spec(tmp_path, entry)).models[0]
    report = task_of(spec).export(spec, Layout.of(tmp_path), False, print).report
    assert report["served"] == "pretrained_int8" and report["int8"]["judged"] is False
    # verified as served: int8's decode loop, alone and 16 in flight, equals int8's generate()
    assert set(report["checks"].values()) == {"token ids equal eager generate()"}
    folder = Layout.of(tmp_path).artifact_dir(spec) / "pretrained"
    assert json.loads((folder / "int8.json").read_text()) == {"keep_fp32": []}
    golden = json.loads(Layout.of(tmp_path).artifact(spec).golden_generation.read_text())
    int8 = LanguageModel(folder, spec.task.generation, form=INT8)
    first = golden["prompts"][0]
    ids = torch.tensor([int8.encode(first)])
    made = int8.model.generate(
        ids, max_new_tokens=golden["max_tokens"], do_sample=False, pad_token_id=0, eos_token_id=0
    )
    assert [t for t in made[0, ids.shape[1] :].tolist() if t != 0] == golden["token_ids"][0]


def held_out() -> list[str]:
    return ["the battery is great.", "this film lasts all day.", "the food was good."] * 8


def gate_spec(tmp_path, **quantize):
    write_tiny_lm(tmp_path)
    gate = {"texts": f"{__name__}:held_out", **quantize}
    entry = TINY_LM_ENTRY + f"    quantize: {json.dumps(gate)}\n"
    return load_spec(write_spec(tmp_path, entry)).models[0]


def goldens(*languages):
    from scripts.pipeline.export_generation import PROMPTS, eager_tokens

    return [eager_tokens(language, PROMPTS[:4], 6) for language in languages]


def test_the_gate_measures_int8_against_fp32_on_held_out_text(tmp_path, trained):
    fp32, int8 = LanguageModel(trained, LIMITS), LanguageModel(trained, LIMITS, form=INT8)
    figures = gate_int8(gate_spec(tmp_path), fp32, int8, *goldens(fp32, int8))
    assert figures["judged"] and figures["fp32_perplexity"] < 0.25 * fp32.vocabulary
    assert figures["tokens"] > 100 and 0.98 <= figures["perplexity_ratio"] <= 1.02
    assert figures["top1_agreement"] >= 0.95
    assert figures["summary"].startswith("pretrained_int8: perplexity ")


def test_the_gate_refuses_a_variant_that_answers_otherwise_naming_each_limit(
    tmp_path, trained, folder
):
    # the untrained folder posing as the trained one's int8: it disagrees everywhere
    fp32, other = LanguageModel(trained, LIMITS), LanguageModel(folder, LIMITS, form=INT8)
    with pytest.raises(BuildError) as error:
        gate_int8(gate_spec(tmp_path), fp32, other, *goldens(fp32, other))
    message = str(error.value)
    assert "held-out perplexity ratio int8/fp32" in message
    assert "is under quantize.min_top1_agreement 0.98" in message
    assert "serve fp32 (serving.format: pretrained)" in message


def test_a_model_that_has_not_learned_is_not_judged(tmp_path, folder):
    fp32, int8 = LanguageModel(folder, LIMITS), LanguageModel(folder, LIMITS, form=INT8)
    with pytest.raises(BuildError, match="has not learned"):
        gate_int8(gate_spec(tmp_path), fp32, int8, *goldens(fp32, int8))
    allowed = gate_spec(tmp_path, allow_unjudged=True)
    assert gate_int8(allowed, fp32, int8, *goldens(fp32, int8))["judged"] is False
