"""A distilled version: a student made from some of its teacher version's layers (renumbered for
the key/value cache), trained with DistilGPT2's loss, gated on held-out perplexity, then
exported and verified token for token like any version."""

from __future__ import annotations

import copy

import json
import shutil

import pytest
import torch

from handlers.engines.completions import LanguageModel
from handlers.formats import folder_format
from scripts.pipeline.distill import gate, student_from
from scripts.pipeline.ensure import ensure_built
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, SpecError, load_spec
from tests.conftest import write_spec
from tests.unit.handlers.conftest import LIMITS, TEXT

PRETRAINED = folder_format("pretrained")
LM_LIMITS = LIMITS.model_copy(update={"end_token": 0})


def texts() -> list[str]:
    return TEXT


def held_out() -> list[str]:
    return ["the battery is great.", "this film lasts all day.", "the food was good."] * 8


def test_a_student_keeping_every_layer_answers_as_its_teacher(folder):
    teacher = PRETRAINED.load_causal_lm(folder)
    ids = torch.tensor([[5, 9, 14, 2, 7]])
    with torch.inference_mode():
        assert torch.equal(
            student_from(teacher, [0, 1])(input_ids=ids).logits, teacher(input_ids=ids).logits
        )
    second = student_from(teacher, [1])
    assert second.config.num_hidden_layers == 1 and teacher.config.num_hidden_layers == 2
    assert second.transformer.h[0].attn.layer_idx == 0  # its keys and values: cache layer 0
    with pytest.raises(BuildError, match=r"layers \[0, 2\]: the teacher has 2 layers"):
        student_from(teacher, [0, 2])


def test_a_pruned_student_keeps_every_layer_with_narrower_mlps_of_the_heaviest_channels(folder):
    teacher = PRETRAINED.load_causal_lm(folder)
    pruned = student_from(teacher, None, 0.25)
    assert pruned.config.n_inner == 96 and pruned.config.num_hidden_layers == 2  # of 4 x 32
    mlp, original = pruned.transformer.h[0].mlp, teacher.transformer.h[0].mlp
    assert mlp.c_fc.weight.shape == (32, 96) and mlp.c_proj.weight.shape == (96, 32)
    weight = original.c_proj.weight.norm(dim=1) * original.c_fc.weight.norm(dim=0)
    kept = weight.topk(96).indices.sort().values
    assert torch.equal(mlp.c_fc.weight, original.c_fc.weight[:, kept])
    with torch.inference_mode():
        logits = pruned(input_ids=torch.tensor([[5, 9, 14]])).logits
    assert logits.shape == (1, 3, teacher.config.vocab_size)


def spec_with_student(root, folder, **distill):
    shutil.copytree(folder, root / "lm", dirs_exist_ok=True)
    settings = {
        "layers": [1],
        "mlp": 0.25,
        "texts": f"{__name__}:texts",
        "held_out": f"{__name__}:held_out",
        **distill,
    }
    entry = f"""
  - name: lm
    source: {{pretrained: lm}}
    task: {{kind: generation, generation: {{max_tokens: 6, max_tokens_limit: 16, end_token: 0}}}}
    versions:
      - version: 2
        training:
          {{epochs: 1, batch_size: 8, learning_rate: 1.0e-3, distill: {json.dumps(settings)}}}
"""
    return load_spec(write_spec(root, entry)).models[0]


def test_a_distilled_version_is_trained_gated_exported_and_verified(tmp_path, trained):
    spec = spec_with_student(tmp_path, trained, max_perplexity_ratio=100)
    student = spec.at_version(2)
    assert str(student.source.pretrained) == "lm/v2"
    assert str(student.training.distill.teacher_folder) == "lm"
    built = ensure_built([spec], Layout.of(tmp_path), version=2, through="export")
    metrics = built.trained[0].metrics
    assert metrics["made by"] == "distilled from version 1 (layers [1], 25% of MLP channels pruned)"
    assert metrics["parameters"] < sum(
        p.numel() for p in PRETRAINED.load_causal_lm(trained).parameters()
    )
    assert {"teacher_perplexity", "student_perplexity", "tokens_per_s_ratio_16"} <= set(metrics)
    config = json.loads((tmp_path / "lm" / "v2" / "config.json").read_text())
    assert config["n_layer"] == 1 and config["n_inner"] == 96
    # its decode loop, alone and in flight, equals its own generate(): the cache renumbering holds
    report = built.exported[0].report
    assert set(report["checks"].values()) == {"token ids equal eager generate()"}


def test_a_student_that_loses_too_much_is_refused_and_deleted(tmp_path, trained, folder):
    spec = spec_with_student(tmp_path, trained, max_perplexity_ratio=1.0).at_version(2)
    out = tmp_path / "student"
    shutil.copytree(folder, out)  # the untrained model posing as the trained one's student
    teacher, student = LanguageModel(trained, LM_LIMITS), LanguageModel(out, LM_LIMITS)
    with pytest.raises(
        BuildError, match=r"over training.distill.max_perplexity_ratio 1.0; keep more"
    ):
        gate(spec, spec.training.distill, teacher, student, out)
    assert not out.exists()


@pytest.mark.parametrize(
    "distill, message",
    [
        ({"teacher": 5}, "training.distill.teacher: version 5 is not another version of lm"),
        ({"layers": [1, 0]}, "give teacher layer indices in rising order"),
        ({"layers": None, "mlp": 0}, "a student smaller than its teacher: give layers"),
    ],
)
def test_distillation_mistakes_are_named(tmp_path, folder, distill, message):
    with pytest.raises((SpecError, ValueError), match=message):
        spec_with_student(tmp_path, folder, **distill).at_version(2)


def tiny_llama(vocabulary: int, width: int, layers: int, heads: int, groups: int, **ids):
    """A seeded Llama-style causal LM: grouped-query attention (`groups` key/value heads), a
    gated MLP 2.5 times as wide as the model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocabulary,
        hidden_size=width,
        intermediate_size=width * 5 // 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=groups,
        max_position_embeddings=128,
        **ids,
    )
    return LlamaForCausalLM(config)


def test_a_llama_style_model_is_served_int8_and_made_a_pruned_student(tmp_path):
    """Not GPT-2: grouped-query attention, a gated MLP of Linear layers, its own config names."""
    from models.review_gpt import train_tokenizer
    from scripts.pipeline.export_generation import eager_tokens, run_together

    tokenizer = train_tokenizer(TEXT, vocab_size=300)
    llama = tiny_llama(tokenizer.get_vocab_size(), 64, 3, 4, 2, eos_token_id=0, bos_token_id=0)
    llama.save_pretrained(tmp_path / "llama")
    tokenizer.save(str(tmp_path / "llama" / "tokenizer.json"))
    prompts = ["the battery", "this film is", "the"]

    def decoded_together_equals_generate(language: LanguageModel) -> bool:
        alone = eager_tokens(language, prompts, 8)["token_ids"]
        together = run_together(language, [{"prompt": p, "max_tokens": 8} for p in prompts])
        return [a["token_ids"] for a in together] == alone

    int8 = LanguageModel(tmp_path / "llama", LM_LIMITS, form=folder_format("pretrained_int8"))
    assert decoded_together_equals_generate(int8)
    student = student_from(PRETRAINED.load_causal_lm(tmp_path / "llama"), [0, 2], 0.25, 0.5)
    assert student.config.num_hidden_layers == 2 and student.config.intermediate_size == 120
    assert (student.config.num_attention_heads, student.config.num_key_value_heads) == (2, 1)
    student.save_pretrained(tmp_path / "student")
    shutil.copy2(tmp_path / "llama" / "tokenizer.json", tmp_path / "student")
    assert decoded_together_equals_generate(LanguageModel(tmp_path / "student", LM_LIMITS))


def test_pruned_heads_are_the_model_without_the_least_weighty_key_value_groups_output():
    """The surgery is exact: the pruned model computes what the whole one does with the
    dropped group's attention output zeroed."""
    whole = tiny_llama(50, 48, 2, 6, 3).eval()
    with torch.no_grad():
        for layer in whole.model.layers:  # group 1 (query heads 2, 3) weighs least
            layer.self_attn.v_proj.weight[8:16] *= 0.01
    pruned = student_from(whole, None, heads=0.4).eval()
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads) == (4, 2)
    assert pruned.config.head_dim == 8
    reference = copy.deepcopy(whole)
    with torch.no_grad():
        for layer in reference.model.layers:
            layer.self_attn.o_proj.weight[:, 16:32] = 0  # query heads 2 and 3's output
    ids = torch.tensor([[1, 7, 3, 9, 4]])
    with torch.no_grad():
        assert torch.allclose(pruned(ids).logits, reference(ids).logits, atol=1e-5)


def test_gpt2_heads_cannot_be_pruned_and_say_what_can():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4))
    with pytest.raises(BuildError, match="cannot hold fewer attention heads.*prune mlp or layers"):
        student_from(gpt2, None, heads=0.5)


def test_make_prune_picks_the_pruned_versions_and_names_a_missing_one():
    from scripts.cli.build import pruned
    from tests.conftest import REPO

    gpt = load_spec(REPO / "models.yaml").select(["review_gpt"])[0]
    assert pruned(gpt, None, None) == pruned(gpt, None, 0.3) == [5]  # v4 drops layers only
    with pytest.raises(BuildError, match=r"no pruned version with those shares.*heads: 0.25"):
        pruned(gpt, 0.25, None)


def test_the_teacher_spec_is_a_llama_over_20m_parameters_that_its_versions_shrink():
    """models/teacher.yaml is trained by hand (20 minutes, too long for CI): here its shape and
    versions are checked without training, pruned from seeded weights as make prune would."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from models.review_llama import SHAPE
    from scripts.cli.build import pruned
    from tests.conftest import REPO

    llama = load_spec(REPO / "models" / "teacher.yaml").select(["review_llama"])[0]
    assert llama.version_numbers == [1, 2, 3, 4, 5, 6, 7]
    assert llama.at_version(2).serving.format == "pretrained_int8"
    assert llama.at_version(5).task.generation.draft.version == 3
    assert str(llama.at_version(6).source.pretrained) == "checkpoints/review_llama/v3"
    assert pruned(llama, None, None) == [4]
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(LlamaConfig(vocab_size=2048, **SHAPE))
    assert sum(p.numel() for p in teacher.parameters()) >= 20_000_000
    half = student_from(teacher, llama.at_version(3).training.distill.layers)
    assert half.config.num_hidden_layers == SHAPE["num_hidden_layers"] // 2
    prune = llama.at_version(4).training.distill
    thinner = student_from(teacher, None, mlp=prune.mlp, heads=prune.heads).config
    assert thinner.num_attention_heads == thinner.num_key_value_heads == 6  # 3 of 9 cut
    assert thinner.intermediate_size <= 0.7 * SHAPE["intermediate_size"]
