"""Step `train` for a distilled version (`training.distill`): a student made from some of a
teacher version's layers, trained on the teacher's soft targets, gated on held-out perplexity.

- The student is the teacher with only `layers` of its blocks kept (DistilGPT2 keeps every other
  one of GPT-2's 12): its embeddings, final norm and output layer are the teacher's, so it starts
  close to it, and its config says its depth.
- Loss at every position, DistilGPT2's: `soft` x T^2 x KL(teacher's softmax(logits / T) to the
  student's) + `hard` x cross-entropy on the next token + `cosine` x (1 - cos) between the two
  last hidden states; on the training texts packed end to end in 64-token blocks, AdamW with a
  linear decay, `training.epochs`, `batch_size`, `learning_rate` and `seed`.
- The gate: held-out perplexity of the student over the teacher's at most
  `distill.max_perplexity_ratio`; decode tokens/s of both in this process (1 and 16 sequences,
  one thread) measured and reported. A student beyond the limit is deleted and the build fails.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F

from handlers.engines.completions import LanguageModel
from handlers.plan import Generation
from scripts.pipeline.layout import Layout
from scripts.pipeline.loading import import_target
from scripts.pipeline.quantize_generation import BLOCK, held_out_blocks, teacher_forced
from scripts.spec import BuildError, ModelSpec
from scripts.spec.sections import Distill

FOLDER_FILES = ("tokenizer.json", "generation_config.json")
RATE_STEPS = 16  # decode steps timed per measurement


def blocks_of(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """(parent, attribute, the ModuleList of the model's transformer blocks)."""
    depth = model.config.num_hidden_layers  # pyright: ignore[reportAttributeAccessIssue]
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            parent, _, attribute = name.rpartition(".")
            return model.get_submodule(parent), attribute, module
    raise BuildError(f"no list of {depth} blocks found in {type(model).__name__}")


def student_from(
    teacher: torch.nn.Module, layers: list[int] | None, mlp: float = 0.0, heads: float = 0.0
) -> torch.nn.Module:
    """A copy of `teacher` keeping only the blocks `layers` (all: None), renumbered for the
    key/value cache, with `mlp` of every block's MLP channels and `heads` of its attention
    heads pruned."""
    student = copy.deepcopy(teacher)
    parent, attribute, blocks = blocks_of(student)
    layers = list(range(len(blocks))) if layers is None else layers
    if layers[-1] >= len(blocks):
        raise BuildError(
            f"training.distill.layers {layers}: the teacher has {len(blocks)} layers (0.."
            f"{len(blocks) - 1})"
        )
    kept = torch.nn.ModuleList([blocks[i] for i in layers])
    for index, block in enumerate(kept):
        for module in block.modules():
            if hasattr(module, "layer_idx"):  # where its keys and values go in the cache
                cast(Any, module).layer_idx = index
    setattr(parent, attribute, kept)
    config: Any = getattr(student, "config")  # transformers' PretrainedConfig
    config.num_hidden_layers = len(layers)
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds
        config.layer_types = [config.layer_types[i] for i in layers]
    if mlp:
        width = prune_mlps(kept, mlp)
        setattr(config, next(k for k in MLP_WIDTH if hasattr(config, k)), width)
    if heads:
        prune_heads(kept, heads, config)
    return student


def prune_heads(blocks: torch.nn.ModuleList, share: float, config: Any) -> None:
    """Every block's attention cut to the same number of key/value groups (the config has one
    count: at most the share given, so that the hidden size stays a multiple of the head count,
    which transformers' configs require), keeping the groups whose weights weigh most: for
    each, the L2 norms of its key and value rows times those of its query heads' rows and their
    output columns. Pruning whole groups keeps grouped-query attention's ratio of query to
    key/value heads. Only a Llama-style attention (q/k/v/o projections, `head_dim` apart from
    the hidden size) can be pruned: GPT-2's attention width is its hidden size."""
    if not hasattr(config, "num_key_value_heads"):
        raise BuildError(
            f"training.distill.heads: {type(config).__name__} cannot hold fewer attention heads "
            "(its attention width is its hidden size, as GPT-2's); prune mlp or layers instead"
        )
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    groups = config.num_key_value_heads
    per_group = config.num_attention_heads // groups
    # transformers' configs still require the hidden size to be a multiple of the head count
    keep = max(
        k
        for k in range(1, max(round(groups * (1 - share)), 1) + 1)
        if config.hidden_size % (k * per_group) == 0
    )
    for block in blocks:
        attention = next((m for m in block.modules() if hasattr(m, "o_proj")), None)
        if attention is None:
            raise BuildError(
                f"training.distill.heads: no q/k/v/o attention in {type(block).__name__}"
            )
        q, k, v, o = (getattr(attention, f"{n}_proj") for n in "qkvo")
        query = q.weight.view(groups, per_group, dim, -1).flatten(2).norm(dim=2)
        output = o.weight.view(-1, groups, per_group, dim).permute(1, 2, 3, 0).flatten(2)
        importance = (query * output.norm(dim=2)).sum(dim=1)
        importance = importance * k.weight.view(groups, -1).norm(dim=1)
        importance = importance * v.weight.view(groups, -1).norm(dim=1)
        kept = importance.topk(keep).indices.sort().values
        rows = lambda size: (kept[:, None] * size + torch.arange(size)).flatten()  # noqa: E731
        with torch.no_grad():
            for layer, size in ((q, per_group * dim), (k, dim), (v, dim)):
                layer.weight = torch.nn.Parameter(layer.weight[rows(size)])
                if layer.bias is not None:
                    layer.bias = torch.nn.Parameter(layer.bias[rows(size)])
                layer.out_features = len(rows(size))
            o.weight = torch.nn.Parameter(o.weight[:, rows(per_group * dim)])
            o.in_features = len(rows(per_group * dim))
    config.head_dim = dim  # kept apart from the hidden size from now on
    config.num_key_value_heads = keep
    config.num_attention_heads = keep * per_group


# An MLP is (layers reading the input, the layer writing the output): GPT-2's Conv1D pair, and
# the gated Linear triple of Llama-style models; each config names its width one way.
MLP_LAYOUTS = ((("c_fc",), "c_proj"), (("gate_proj", "up_proj"), "down_proj"))
MLP_WIDTH = ("n_inner", "intermediate_size")


def prune_mlps(blocks: torch.nn.ModuleList, share: float) -> int:
    """Every block's MLP cut to the same width (the config has one), keeping the channels whose
    weights in and out weigh most (L2 norms multiplied); returns the width."""
    from transformers.pytorch_utils import Conv1D

    width = 0
    for block in blocks:
        found = next(
            (
                (m, i, o)
                for m in block.modules()
                for i, o in MLP_LAYOUTS
                if hasattr(m, o) and all(hasattr(m, name) for name in i)
            ),
            None,
        )
        if found is None:
            raise BuildError(
                f"training.distill.mlp: no MLP laid out as {MLP_LAYOUTS} in "
                f"{type(block).__name__}; prune by layers instead"
            )
        mlp, inputs, output = found
        reading = [getattr(mlp, name) for name in inputs]
        writing = getattr(mlp, output)
        # channel j: Conv1D keeps it as a column in, a row out; Linear the other way round
        conv = isinstance(writing, Conv1D)
        importance = writing.weight.norm(dim=1 if conv else 0)
        for layer in reading:
            importance = importance * layer.weight.norm(dim=0 if conv else 1)
        width = round(len(importance) * (1 - share))
        kept = importance.topk(width).indices.sort().values
        with torch.no_grad():
            for layer in reading:
                layer.weight = torch.nn.Parameter(
                    layer.weight[:, kept] if conv else layer.weight[kept]
                )
                if layer.bias is not None:
                    layer.bias = torch.nn.Parameter(layer.bias[kept])
                if conv:
                    layer.nf = width
                else:
                    layer.out_features = width
            writing.weight = torch.nn.Parameter(
                writing.weight[kept] if conv else writing.weight[:, kept]
            )
            if conv:
                writing.nx = width
            else:
                writing.in_features = width
    return width


def distill_loss(
    student: torch.nn.Module, teacher: torch.nn.Module, batch: torch.Tensor, settings: Distill
) -> torch.Tensor:
    with torch.no_grad():
        taught = teacher(input_ids=batch, output_hidden_states=True)
    made = student(input_ids=batch, output_hidden_states=True)
    vocabulary = made.logits.shape[-1]
    t = settings.temperature
    soft = F.kl_div(
        F.log_softmax(made.logits.reshape(-1, vocabulary) / t, -1),
        F.log_softmax(taught.logits.reshape(-1, vocabulary) / t, -1),
        log_target=True,
        reduction="batchmean",
    )
    hard = F.cross_entropy(made.logits[:, :-1].reshape(-1, vocabulary), batch[:, 1:].reshape(-1))
    cosine = 1 - F.cosine_similarity(made.hidden_states[-1], taught.hidden_states[-1], -1).mean()
    return settings.soft * t * t * soft + settings.hard * hard + settings.cosine * cosine


def training_blocks(language: LanguageModel, texts: list[str]) -> torch.Tensor:
    ids = [t for text in texts for t in [*language.encode(text), language.end_token]]
    block = min(BLOCK, language.context_length)
    return torch.tensor(ids[: len(ids) // block * block], dtype=torch.long).view(-1, block)


def train_student(
    student: torch.nn.Module, teacher: torch.nn.Module, blocks: torch.Tensor, spec: ModelSpec
) -> None:
    training, settings = spec.training, spec.training and spec.training.distill
    assert training and settings, "distill runs only for a version with training.distill"
    generator = torch.Generator().manual_seed(training.seed)
    steps = training.epochs * math.ceil(len(blocks) / training.batch_size)
    optimizer = torch.optim.AdamW(student.parameters(), lr=training.learning_rate)
    schedule = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=steps)
    teacher.eval()
    student.train()
    for _ in range(training.epochs):
        order = torch.randperm(len(blocks), generator=generator)
        for batch in blocks[order].split(training.batch_size):
            loss = distill_loss(student, teacher, batch, settings)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    student.eval()


def decode_rate(model: torch.nn.Module, batch: int) -> float:
    """Greedy decode tokens/s of `batch` sequences (best of three), after an 8-token prompt."""
    best = 0.0
    with torch.inference_mode():
        for _ in range(3):
            out = model(input_ids=torch.zeros(batch, 8, dtype=torch.long), use_cache=True)
            started = time.perf_counter()
            for _ in range(RATE_STEPS):
                step = out.logits[:, -1:].argmax(-1)
                out = model(input_ids=step, cache=out.cache, use_cache=True)
            best = max(best, batch * RATE_STEPS / (time.perf_counter() - started))
    return best


def distill(spec: ModelSpec, layout: Layout, out: Path) -> dict[str, Any]:
    """The student written as the Hugging Face folder `out`; the train table's metrics."""
    training = spec.training
    settings = training.distill if training else None
    assert settings and settings.teacher_folder, "versions.py sets the teacher's folder"
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights whatever threads the calling process set
    try:
        teacher_folder = layout.source(settings.teacher_folder)
        if not (teacher_folder / "model.safetensors").exists():
            raise BuildError(
                f"{spec.name} version {spec.version} distils version {settings.teacher}, whose "
                f"folder {layout.shown(teacher_folder)} is not built; build it first "
                f"(`make train MODEL={spec.name}`)"
            )
        limits = spec.task.generation or Generation.model_validate({})  # its end token
        teacher = LanguageModel(teacher_folder, limits)
        torch.manual_seed(training.seed if training else 0)
        student = student_from(teacher.model, settings.layers, settings.mlp, settings.heads)
        blocks = training_blocks(teacher, import_target(settings.texts)())
        train_student(student, teacher.model, blocks, spec)
        shutil.rmtree(out, ignore_errors=True)
        student.save_pretrained(out)  # pyright: ignore[reportCallIssue]
        for name in FOLDER_FILES:
            if (teacher_folder / name).exists():
                shutil.copy2(teacher_folder / name, out / name)
        metrics = gate(spec, settings, teacher, LanguageModel(out, limits), out)
    finally:
        torch.set_num_threads(threads)
    return {
        "made by": f"distilled from version {settings.teacher} ({student_shape(settings)})",
        **metrics,
        "training_blocks": len(blocks),
        "training_seconds": round(time.perf_counter() - started, 1),
    }


def student_shape(settings: Distill) -> str:
    kept = "all layers" if settings.layers is None else f"layers {settings.layers}"
    kept += f", {settings.mlp:.0%} of MLP channels pruned" if settings.mlp else ""
    return kept + (f", {settings.heads:.0%} of attention heads pruned" if settings.heads else "")


def gate(
    spec: ModelSpec, settings: Distill, teacher: LanguageModel, student: LanguageModel, out: Path
) -> dict[str, Any]:
    texts = import_target(settings.held_out)()
    figures = teacher_forced(
        teacher, student, held_out_blocks(teacher, texts), ("teacher", "student")
    )
    ratio = figures["student_perplexity"] / figures["teacher_perplexity"]
    rates = {
        batch: decode_rate(student.model, batch) / decode_rate(teacher.model, batch)
        for batch in (1, 16)
    }
    metrics = {
        "teacher_perplexity": round(figures["teacher_perplexity"], 2),
        "student_perplexity": round(figures["student_perplexity"], 2),
        "perplexity_ratio": round(ratio, 3),
        "top1_agreement": round(figures["top1_agreement"], 4),
        "tokens_per_s_ratio_1": round(rates[1], 2),
        "tokens_per_s_ratio_16": round(rates[16], 2),
        "parameters": sum(p.numel() for p in student.model.parameters()),
    }
    if ratio > settings.max_perplexity_ratio:
        shutil.rmtree(out, ignore_errors=True)
        raise BuildError(
            f"{spec.name} version {spec.version}: the student's held-out perplexity "
            f"{metrics['student_perplexity']} is {ratio:.3f}x the teacher's "
            f"{metrics['teacher_perplexity']}, over training.distill.max_perplexity_ratio "
            f"{settings.max_perplexity_ratio}; keep more layers or train longer"
        )
    return metrics
