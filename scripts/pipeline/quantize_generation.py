"""Format `pretrained_int8`'s gate: a language model's int8 variant (handlers/formats/
pretrained_int8.py) against its fp32 folder, before anything serves it.

- held-out perplexity of both, on the spec's held-out texts (`quantize.texts`, a function),
  packed end to end as training packs them; the ratio int8 / fp32 is gated;
- teacher-forced top-1 agreement: at every position of the same text, the same most likely next
  token;
- greedy agreement: the share of the golden prompts whose greedy continuation is the same.

A model whose fp32 perplexity is no better than a quarter of its vocabulary has not learned
(random weights, as the zoo's GPT-2-sized model): agreement between two variants of noise says
nothing about quality, so the gate refuses to judge it and the build needs
`quantize.allow_unjudged: true` to go on. The same holds without held-out texts.
"""

from __future__ import annotations

import math
from typing import Any

from handlers.engines.completions import LanguageModel
from scripts.pipeline.loading import import_target
from scripts.spec import BuildError, ModelSpec

BLOCK = 64  # tokens per held-out block (review_gpt trains on 64)
MAX_TOKENS = 8192  # held-out tokens the gate reads: enough for 0.1% steps of agreement
BATCH = 16
UNLEARNED = 0.25  # fp32 perplexity over this share of the vocabulary: not a trained model


def held_out_blocks(language: LanguageModel, texts: list[str]):
    """The texts' tokens, each text ended by the end token, as [blocks, BLOCK] (at most
    MAX_TOKENS of them)."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids += [*language.encode(text), language.end_token]
        if len(ids) >= MAX_TOKENS:
            break
    block = min(BLOCK, language.context_length)
    usable = min(len(ids), MAX_TOKENS) // block * block
    return torch.tensor(ids[:usable], dtype=torch.long).view(-1, block)


def teacher_forced(
    reference: LanguageModel,
    variant: LanguageModel,
    blocks,
    names: tuple[str, str] = ("fp32", "int8"),
) -> dict[str, float]:
    """Held-out perplexity of both (`<name>_perplexity`) and their top-1 agreement, position
    by position."""
    import torch
    import torch.nn.functional as F

    models = dict(zip(names, (reference, variant)))
    losses = dict.fromkeys(names, 0.0)
    agree = positions = 0
    with torch.inference_mode():
        for batch in blocks.split(BATCH):
            logits = {
                name: model.model(input_ids=batch).logits[:, :-1].float()
                for name, model in models.items()
            }
            targets = batch[:, 1:].reshape(-1)
            for name, values in logits.items():
                losses[name] += float(
                    F.cross_entropy(values.reshape(-1, values.shape[-1]), targets, reduction="sum")
                )
            agree += int((logits[names[0]].argmax(-1) == logits[names[1]].argmax(-1)).sum())
            positions += targets.numel()
    return {
        **{f"{name}_perplexity": math.exp(losses[name] / positions) for name in names},
        "top1_agreement": agree / positions,
        "tokens": positions,
    }


def gate_int8(
    spec: ModelSpec, fp32: LanguageModel, int8: LanguageModel, golden: dict, int8_golden: dict
) -> dict[str, Any]:
    """The gate's figures (for the build table and the export report); BuildError where int8
    loses more than the spec allows, or where quality cannot be judged and nobody said so."""
    limits = spec.quantize.language_gate
    same = [a == b for a, b in zip(golden["token_ids"], int8_golden["token_ids"])]
    figures: dict[str, Any] = {"greedy_agreement": sum(same) / len(same)}
    texts = import_target(limits["texts"])() if limits["texts"] else []
    if texts:
        figures.update(teacher_forced(fp32, int8, held_out_blocks(fp32, texts)))
        figures["perplexity_ratio"] = figures["int8_perplexity"] / figures["fp32_perplexity"]
    unjudged = unjudged_reason(figures, fp32.vocabulary)
    figures["judged"] = unjudged is None
    figures["summary"] = summary(figures, unjudged)
    if unjudged is not None:
        if not limits["allow_unjudged"]:
            raise BuildError(
                f"{spec.name}: the int8 gate cannot judge quality: {unjudged}. Give held-out "
                "texts (quantize.texts: module:function), or serve int8 knowingly with "
                "quantize.allow_unjudged: true"
            )
        return figures
    problems = [
        f"{what} {value:.4g} is {'over' if high else 'under'} quantize.{limit} {limits[limit]}"
        for what, value, limit, high in (
            (
                "held-out perplexity ratio int8/fp32",
                figures["perplexity_ratio"],
                "max_perplexity_ratio",
                True,
            ),
            (
                "teacher-forced top-1 agreement",
                figures["top1_agreement"],
                "min_top1_agreement",
                False,
            ),
            (
                "greedy agreement on the golden prompts",
                figures["greedy_agreement"],
                "min_greedy_agreement",
                False,
            ),
        )
        if (value > limits[limit] if high else value < limits[limit])
    ]
    if problems:
        raise BuildError(
            f"{spec.name}: int8 loses too much ({'; '.join(problems)}); serve fp32 "
            "(serving.format: pretrained) or change the limit knowingly"
        )
    return figures


def unjudged_reason(figures: dict[str, Any], vocabulary: int) -> str | None:
    if "fp32_perplexity" not in figures:
        return "no held-out texts (quantize.texts)"
    if figures["fp32_perplexity"] > UNLEARNED * vocabulary:
        return (
            f"fp32's held-out perplexity {figures['fp32_perplexity']:.0f} is over a quarter of "
            f"the vocabulary ({vocabulary}): the model has not learned (random weights?)"
        )
    return None


def summary(figures: dict[str, Any], unjudged: str | None) -> str:
    greedy = f"greedy agreement {figures['greedy_agreement']:.0%}"
    if "fp32_perplexity" not in figures:
        return f"pretrained_int8: {greedy}; quality not judged ({unjudged})"
    judged = "" if unjudged is None else "; quality not judged (untrained)"
    return (
        f"pretrained_int8: perplexity {figures['fp32_perplexity']:.2f} -> "
        f"{figures['int8_perplexity']:.2f} ({figures['perplexity_ratio']:.3f}x), top-1 "
        f"agreement {figures['top1_agreement']:.2%} over {figures['tokens']} tokens, {greedy}"
        f"{judged}"
    )
