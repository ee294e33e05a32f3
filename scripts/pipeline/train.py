"""Step `train`: fit each model that has a `training` section, with fixed seeds.

Writes beside the spec's checkpoint path: the state_dict, the pre-processing assets
(standardization statistics, vocabulary), held-out samples for the golden files, raw example
requests, and metrics.json with the held-out accuracy.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import handlers.preprocessing.processing
from scripts.pipeline.training_data import TrainingData
from scripts.pipeline.fingerprint import fingerprint, is_fresh, source_file, write_stamp
from scripts.pipeline.loading import build_module, import_target
from scripts.pipeline.sealed import refuse_changed
from scripts.pipeline.verify import random_tensor
from scripts.pipeline.layout import Layout
from scripts.spec import BuildError, ModelSpec
from scripts.spec.sections import Training
from scripts.tasks import task_of

HELD_OUT_SAMPLES = 16  # held-out examples kept as golden inputs for export and serving checks


@dataclass
class TrainResult:
    name: str
    skipped: bool  # True when nothing changed since the last run
    metrics: dict


def training_of(spec: ModelSpec) -> Training:
    """The spec's training: section (only models that have one are trained here)."""
    if spec.training is None:
        raise BuildError(f"{spec.name}: no training: section to train from")
    return spec.training


def checkpoint_file(spec: ModelSpec, layout: Layout) -> Path:
    """Where training writes the weights: the spec's source.checkpoint."""
    if spec.source.checkpoint is None:
        raise BuildError(f"{spec.name}: source.checkpoint names where training writes to")
    return layout.source(spec.source.checkpoint)


def model_file(spec: ModelSpec, layout: Layout) -> Path:
    """What training makes: the checkpoint, or the exported file a training script writes."""
    return layout.source(spec.source.made)


def checkpoint_dir(spec: ModelSpec, layout: Layout) -> Path:
    """Where training writes: beside the file it makes, or into the folder (pretrained)."""
    made = model_file(spec, layout)
    return made if spec.source.pretrained is not None else made.parent


def train_fingerprint(spec: ModelSpec, layout: Layout) -> str:
    """Everything that changes the trained weights: model class and kwargs, training settings,
    task and pre-processing, and the code of the module, the data function and the shared
    pre-processing functions."""
    settings = spec.model_dump(
        include={"source", "training", "task", "inputs", "outputs"}, mode="json"
    )
    # which version drafts for it is how a version decodes, not what weights it has: a drafted
    # version shares its base's folder and must not retrain it
    (settings["task"].get("generation") or {}).pop("draft", None)
    training = training_of(spec)
    settings["training"] = training.fingerprinted()
    files = [source_file(spec.source.module)] if spec.source.module else []
    files += [Path(__file__), Path(handlers.preprocessing.processing.__file__)]
    targets = (training.data, training.assets, training.script)
    files += [source_file(target) for target in targets if target]
    for path in (layout.source(p) for p in training_of(spec).data_files):
        files += sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    distill = training.distill
    if distill is not None and distill.teacher_folder is not None:  # the teacher's weights too
        teacher = layout.source(distill.teacher_folder)
        files += [Path(__file__).with_name("distill.py"), teacher / "model.safetensors"]
        files += [source_file(distill.texts), source_file(distill.held_out)]
    return fingerprint(settings, files)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit(spec: ModelSpec, data: TrainingData) -> nn.Module:
    generator = seed_everything(training_of(spec).seed)
    model = build_module(spec).train()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    loss_fn = task_of(spec).loss(spec, spec.outputs[0].shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=training_of(spec).learning_rate)
    for _ in range(training_of(spec).epochs):
        for batch in torch.randperm(len(x), generator=generator).split(
            training_of(spec).batch_size
        ):
            optimizer.zero_grad()
            prediction = model(x[batch])
            if isinstance(loss_fn, nn.NLLLoss):
                prediction = prediction.clamp_min(1e-12).log()
            loss_fn(prediction, y[batch]).backward()
            optimizer.step()
    return model.eval()


def evaluate(spec: ModelSpec, model: nn.Module, data: TrainingData) -> dict:
    with torch.inference_mode():
        output = model(torch.from_numpy(data.x_test)).numpy()
    return task_of(spec).held_out_metrics(spec, output, data.y_test)


def save(
    spec: ModelSpec, model: nn.Module, data: TrainingData, metrics: dict, layout: Layout
) -> None:
    out = checkpoint_dir(spec, layout)
    (out / "requests").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), checkpoint_file(spec, layout))
    for name, text in data.assets.items():
        (out / name).write_text(text)
    for name, payload in data.requests.items():
        (out / "requests" / name).write_bytes(payload)
    inputs = {spec.inputs[0].name: data.x_test[:HELD_OUT_SAMPLES]}
    np.savez(out / "samples.npz", **inputs)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def write_encoded_examples(spec: ModelSpec, layout: Layout, count: int = 2) -> None:
    """Example requests in the kind's encoded form (PNG images) from random rows, so the bytes
    path of a model without training data is verified end to end too."""
    kind = spec.task.preprocess
    if (
        kind.encoded_suffix is None or kind.asset_files()
    ):  # text needs the vocabulary training writes
        return
    rng = np.random.default_rng(training_of(spec).seed)
    if spec.batching.max_batch_size:
        rows = list(random_tensor(spec.inputs[0], count, rng))
    else:  # no batch axis: each example is a whole tensor
        rows = [random_tensor(spec.inputs[0], 1, rng) for _ in range(count)]
    folder = checkpoint_dir(spec, layout) / "requests"
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        (folder / f"example_{i}{kind.encoded_suffix}").write_bytes(kind.encode(row, {}))


def save_initialisation(spec: ModelSpec, layout: Layout) -> dict:
    """The seeded random weights as the checkpoint; golden inputs are drawn at export."""
    training = training_of(spec)
    seed_everything(training.seed)
    checkpoint_dir(spec, layout).mkdir(parents=True, exist_ok=True)
    if training.assets:
        for name, text in import_target(training.assets)().items():  # e.g. requests/example.txt
            (checkpoint_dir(spec, layout) / name).parent.mkdir(parents=True, exist_ok=True)
            (checkpoint_dir(spec, layout) / name).write_text(text, encoding="utf-8")
    torch.save(build_module(spec).state_dict(), checkpoint_file(spec, layout))
    write_encoded_examples(spec, layout)
    metrics = {"weights": "random initialisation", "seed": training.seed}
    (checkpoint_dir(spec, layout) / "metrics.json").write_text(json.dumps(metrics) + "\n")
    return metrics


def run_script(spec: ModelSpec, layout: Layout) -> dict:
    """The spec's training script writes the exported file the spec serves."""
    checkpoint_dir(spec, layout).mkdir(parents=True, exist_ok=True)
    training = training_of(spec)
    if training.script is None:
        raise BuildError(f"{spec.name}: no training.script to run")
    made = import_target(training.script)(model_file(spec, layout), training.seed)
    metrics = {"made by": training.script, "seed": training.seed}
    metrics.update(made if isinstance(made, dict) else {})  # what the script measured
    (checkpoint_dir(spec, layout) / "metrics.json").write_text(json.dumps(metrics) + "\n")
    return metrics


def run_distill(spec: ModelSpec, layout: Layout) -> dict:
    """A student of a teacher version, written as this version's folder (distill.py)."""
    from scripts.pipeline.distill import distill

    metrics = distill(spec, layout, model_file(spec, layout))
    (checkpoint_dir(spec, layout) / "metrics.json").write_text(json.dumps(metrics) + "\n")
    return metrics


def train_model(spec: ModelSpec, layout: Layout, force: bool = False) -> TrainResult:
    stamp = checkpoint_dir(spec, layout) / "train.stamp.json"
    expected = train_fingerprint(spec, layout)
    if not force and is_fresh(stamp, expected, [model_file(spec, layout)]):
        return TrainResult(spec.name, True, json.loads((stamp.parent / "metrics.json").read_text()))
    refuse_changed(spec, layout, force)
    training = training_of(spec)
    if training.distill is not None:
        metrics = run_distill(spec, layout)
    elif training.script is not None:
        metrics = run_script(spec, layout)
    elif training.data is None:
        metrics = save_initialisation(spec, layout)
    else:
        data = import_target(training.data)(seed=training.seed, preprocess=spec.task.preprocess)
        model = fit(spec, data)
        metrics = evaluate(spec, model, data)
        save(spec, model, data, metrics, layout)
    write_stamp(stamp, expected)
    return TrainResult(spec.name, False, metrics)
