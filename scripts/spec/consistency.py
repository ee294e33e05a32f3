"""Checks across the sections of one model's spec entry, run once each section validated:
tensor names, formats against the source, files that must exist, imports, padding, per-runtime
overrides and versions. Each check returns the problems it finds, naming the field and the
fix, so that one error lists them all (the entry is scripts/spec/schema.py's ModelSpec).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from handlers.formats import format_of
from handlers.preprocessing.kinds import ENSEMBLE_OUTPUTS
from scripts.spec.overrides import override_problems
from scripts.spec.versions import version_problems


def entry_problems(spec, root: Path) -> list[str]:
    """Every problem of the entry; `root` is the folder its paths are relative to."""
    problems = [*format_problems(spec), *file_problems(spec, root), *import_problems(spec)]
    problems += batch_axis_problems(spec) + tensor_name_problems(spec) + script_problems(spec)
    problems += generation_problems(spec, root) + draft_problems(spec)
    problems += spec.task.serving.entry_problems(spec.task, spec.outputs, spec.batching)
    try:
        spec.task.preprocess.produces(spec.inputs)
    except ValueError as exc:
        problems.append(str(exc))
    problems += padding_problems(spec)
    problems += override_problems(
        spec.per_runtime, spec.batching.max_batch_size, spec.export.wanted
    )
    problems += version_problems(spec)
    return problems


def batch_axis_problems(spec) -> list[str]:
    """With batching the first axis of every tensor is the batch axis; without it
    (max_batch_size 0) shapes are taken as they are."""
    if spec.batching.max_batch_size == 0:
        scores = spec.outputs[0] if spec.outputs else None
        if spec.task.serving.labelled and scores and scores.shape[0] != -1:
            return [
                f"outputs[0].shape: a classifier labels rows of scores, got {scores.shape}; give "
                "the scores a leading -1 axis (e.g. [-1, classes]) or use task kind raw"
            ]
        return []
    return [
        f"{field}[{i}].shape: the first axis is the batch axis and must be -1 while "
        f"batching.max_batch_size is {spec.batching.max_batch_size}, got {t.shape}; for a model "
        "without a batch axis set batching: {max_batch_size: 0}"
        for field, tensors in (("inputs", spec.inputs), ("outputs", spec.outputs))
        for i, t in enumerate(tensors)
        if t.shape[0] != -1
    ]


GENERATION_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def draft_problems(spec) -> list[str]:
    """A model's own draft (task.generation.draft) is another of its versions (a version's
    serving.draft is checked with the versions)."""
    generation = spec.task.generation
    if generation is None or generation.draft is None:
        return []
    others = [v.version for v in spec.versions]
    if generation.draft.version in others:
        return []
    listed = others or "it has none: add the draft, e.g. a distilled student, under versions:"
    return [
        f"task.generation.draft.version: {generation.draft.version} is not another version of "
        f"{spec.name} ({listed})"
    ]


def generation_problems(spec, root: Path) -> list[str]:
    """A generation model is a Hugging Face folder (`pretrained`), or a module:Class that is a
    transformers causal LM with its checkpoint and a tokenizer.json; only it is served so."""
    source = spec.source
    if not spec.task.serving.pretrained:
        folders = any(format_of(f).generation for f in spec.export.wanted)
        if source.pretrained or source.tokenizer or folders:
            return [
                "source.pretrained / source.tokenizer / format pretrained: only a generation "
                "model (task: {kind: generation}) is served from a Hugging Face folder"
            ]
        return []
    if source.exported is not None or (source.module and source.tokenizer is None):
        return [
            "source: a generation model comes as a Hugging Face folder (source.pretrained: "
            "config.json, model.safetensors, tokenizer.json, what save_pretrained writes), or "
            "as module (a transformers causal LM class) with checkpoint and tokenizer "
            "(a tokenizer.json)"
        ]
    problems = []
    wanted = [("source.tokenizer", source.tokenizer)]
    if source.pretrained is not None:
        wanted = [("source.pretrained", source.pretrained / name) for name in GENERATION_FILES]
    if spec.training is None:
        problems += [
            f"{field}: {path} not found (save the model with save_pretrained and the tokenizer "
            "with tokenizer.save, or add training.script to make them)"
            for field, path in wanted
            if not (root / path).exists()
        ]
    elif spec.training.data is not None:
        problems.append(
            "training.data: a generation model is trained by its own training.script, which "
            "writes source.pretrained (or the checkpoint)"
        )
    if spec.batching.max_batch_size < 1:
        problems.append(
            "batching.max_batch_size: the most sequences decoded together; give at least 1"
        )
    if not spec.batching.dynamic or any(s.dynamic is False for s in spec.per_runtime.values()):
        problems.append(
            "batching.dynamic: a generation model's requests are batched by its decode loop "
            "(in-flight), not by the runtime; remove dynamic: false"
        )
    if spec.serving.workers.max > 1:
        # TorchServe 0.12's continuous batching polls new work under one model-wide lock: a
        # worker waiting for a new request stalls every other worker's running streams
        problems.append(
            "serving.workers: a generation model is served by one TorchServe worker (in-flight "
            "batching decodes all its requests together; with more, TorchServe 0.12 stalls "
            "running streams until new traffic arrives); use Triton instances or replicas"
        )
    return problems


def script_problems(spec) -> list[str]:
    """A training script writes an exported file or folder; one is not trained otherwise."""
    training = spec.training
    exported = spec.source.exported is not None or spec.source.pretrained is not None
    if training is None or exported == (training.script is not None):
        return []
    if exported:
        return [
            "training: an exported source is not trained; give training.script (a function "
            "that writes the file) or remove the training section"
        ]
    return [
        "training.script: it writes source.exported (or source.pretrained); give one, or remove it"
    ]


def tensor_name_problems(spec) -> list[str]:
    names = [t.name for t in [*spec.inputs, *spec.outputs]]
    problems = []
    if len(set(names)) != len(names):
        problems.append(f"inputs/outputs: tensor names must be unique, got {names}")
    problems += [
        f"inputs/outputs: {n!r}: '__' is reserved (Triton's libtorch backend names tensors "
        "<name>__<index>); rename it"
        for n in names
        if "__" in n
    ]
    problems += [
        f"inputs/outputs: {n!r} is a tensor of this model's Triton ensemble; rename it"
        for n in names
        if n in ensemble_tensors(spec)
    ]
    return problems


def ensemble_tensors(spec) -> set[str]:
    """Names a Triton ensemble uses for its own tensors: bytes in, a classifier's label out."""
    raw = spec.task.preprocess.ensemble_input
    if raw is None:
        return set()
    return {raw, *ENSEMBLE_OUTPUTS} if spec.task.serving.labelled else {raw}


def padding_problems(spec) -> list[str]:
    pad = spec.batching.pad
    if pad is None:
        return []
    problems = []
    if not any(-1 in t.shape[1:] for t in spec.inputs):
        problems.append("batching.pad: no input has a dynamic non-batch axis to pad; remove pad")
    if pad.mask is not None and pad.mask not in spec.tensor_names:
        problems.append(
            f"batching.pad.mask: {pad.mask!r} is not an input (inputs: {spec.tensor_names})"
        )
    problems += [
        f"batching.pad: output {t.name!r} has a dynamic non-batch axis, which padding would "
        "change; remove pad (requests then batch only with others of the same shape)"
        for t in spec.outputs
        if -1 in t.shape[1:]
    ]
    return problems


def format_problems(spec) -> list[str]:
    problems = []
    if spec.serving.format not in spec.export.wanted:
        problems.append(
            f"serving.format: {spec.serving.format!r} is not in export.formats "
            f"{spec.export.formats}; add it there or serve one of those"
        )
    for fmt in map(format_of, spec.export.wanted):
        origin = fmt.quantized_from
        if origin is not None and origin not in spec.export.wanted:
            problems.append(
                f"export.formats: {fmt.name} is quantised from the {format_of(origin).title} "
                f"export; add {origin} before it"
            )
    if spec.source.is_torchscript and not spec.export.auto:
        unsupported = sorted(
            f for f in set(spec.export.formats) if not format_of(f).from_torchscript
        )
        if unsupported:
            problems.append(
                f"export.formats: {unsupported} cannot be made from a TorchScript "
                "file; use torchscript and onnx, or give an ExportedProgram .pt2"
            )
    return problems


def file_problems(spec, root: Path) -> list[str]:
    """Files the build cannot make itself must exist now; trained models make theirs."""
    if spec.training is not None:
        return []
    wanted = {
        "source.checkpoint": spec.source.checkpoint,
        "source.exported": spec.source.exported,
        **{f"task.preprocess.{f}": path for f, path in spec.task.preprocess.asset_files().items()},
    }
    return [
        f"{field}: file not found: {path} (fix the path, or add a training section "
        "so `make train` creates it)"
        for field, path in wanted.items()
        if path is not None and not (root / path).exists()
    ]


def import_problems(spec) -> list[str]:
    return [
        f"{field}: cannot import module {target.split(':')[0]!r} (is it on the path, "
        "e.g. under models/?)"
        for field, target in (
            ("source.module", spec.source.module),
            ("training.data", spec.training and spec.training.data),
            ("training.script", spec.training and spec.training.script),
        )
        if target and importlib.util.find_spec(target.split(":")[0]) is None
    ]
