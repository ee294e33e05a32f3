"""The bytes-in ensemble of a model whose pre-processing kind decodes encoded requests:
<name>_pre (bytes -> model input), for a classifier <name>_post (model outputs -> label, score),
and the ensemble wiring them around the tensor model (other tasks answer the model's outputs),
with the check of that wiring before a server sees it. Each config is built with configs.py's
pieces.
"""

from __future__ import annotations

from scripts.runtimes.triton.model_config import DataType, ModelConfig, mc

from handlers.preprocessing.kinds import ENSEMBLE_OUTPUTS
from handlers.plan import ServingPlan
from scripts.runtimes.triton.configs import base_config, io_entries, set_role, triton_names
from scripts.runtimes.triton.signature import STRING, Signature, Tensor, data_type
from scripts.spec import ModelSpec

LABEL, SCORE = ENSEMBLE_OUTPUTS


def has_ensemble(spec: ModelSpec | ServingPlan) -> bool:
    """Kinds that decode encoded requests (images, text) get a bytes-in ensemble."""
    preprocess = spec.preprocess if isinstance(spec, ServingPlan) else spec.task.preprocess
    return preprocess.ensemble_input is not None


def ensemble_parts(spec: ModelSpec | ServingPlan) -> list[str]:
    """The Triton models around the tensor model, by suffix: a classifier's ensemble answers
    label and score through <name>_post; any other answers the model's outputs."""
    if not has_ensemble(spec):
        return []
    return ["pre", "post", "ensemble"] if spec.task.serving.labelled else ["pre", "ensemble"]


def ensemble_configs(spec: ServingPlan, backend: str, signature: Signature) -> list[ModelConfig]:
    """<name>_pre (bytes -> model input), <name>_post for a classifier (model outputs -> label,
    score) and the ensemble wiring them around the tensor model."""
    inputs, outputs = signature
    mbs = spec.batching.max_batch_size
    ensemble_input = spec.preprocess.ensemble_input
    assert ensemble_input, "an ensemble is built only for a pre-processing that takes bytes"
    raw = Tensor(ensemble_input, STRING, [-1, 1])
    labelled = "post" in ensemble_parts(spec)
    answers = (
        [Tensor(LABEL, STRING, [-1, 1]), Tensor(SCORE, data_type("float32"), [-1, 1])]
        if labelled
        else outputs
    )
    produced = [t.name for t in spec.preprocess.produces(spec.inputs)]
    made = [t for t in inputs if t.name in produced]  # the model inputs pre-processing makes

    pre = base_config(spec, f"{spec.name}_pre", backend="python")
    pre.input.extend(io_entries([raw], [raw.name], mbs, mc.ModelInput))
    pre.output.extend(io_entries(made, [t.name for t in made], mbs, mc.ModelOutput))
    set_role(pre, "preprocess")

    in_names, out_names = triton_names(spec, backend)
    ensemble = base_config(spec, f"{spec.name}_ensemble", platform="ensemble")
    ensemble.input.extend(io_entries([raw], [raw.name], mbs, mc.ModelInput))
    ensemble.output.extend(io_entries(answers, [t.name for t in answers], mbs, mc.ModelOutput))
    steps = ensemble.ensemble_scheduling.step
    # input_map: step model's tensor -> ensemble tensor; output_map likewise.
    steps.add(
        model_name=pre.name,
        model_version=-1,
        input_map={raw.name: raw.name},
        output_map={t.name: t.name for t in made},
    )
    steps.add(
        model_name=spec.name,
        model_version=-1,
        input_map={n: t.name for n, t in zip(in_names, inputs) if t.name in produced},
        output_map={n: t.name for n, t in zip(out_names, outputs)},
    )
    if not labelled:
        return [pre, ensemble]
    post = base_config(spec, f"{spec.name}_post", backend="python")
    post.input.extend(io_entries(outputs, [t.name for t in outputs], mbs, mc.ModelInput))
    post.output.extend(io_entries(answers, [t.name for t in answers], mbs, mc.ModelOutput))
    set_role(post, "postprocess")
    steps.add(
        model_name=post.name,
        model_version=-1,
        input_map={t.name: t.name for t in outputs},
        output_map={t.name: t.name for t in answers},
    )
    return [pre, post, ensemble]


def check_ensemble(ensemble: ModelConfig, configs: dict[str, ModelConfig]) -> list[str]:
    """Every step's tensors exist in its model with the dtype and dims of the ensemble tensor
    mapped to it; every ensemble output is produced and every step input is available."""
    problems: list[str] = []
    known = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
    where = f"ensemble {ensemble.name}"
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        model_in = {t.name: (t.data_type, list(t.dims)) for t in model.input}
        model_out = {t.name: (t.data_type, list(t.dims)) for t in model.output}
        for model_tensor, ens_tensor in step.input_map.items():
            if model_tensor not in model_in:
                problems.append(
                    f"{where}: step {step.model_name}: no input {model_tensor!r} "
                    f"(has {sorted(model_in)})"
                )
            elif ens_tensor not in known:
                problems.append(
                    f"{where}: step {step.model_name}: {ens_tensor!r} is not produced before "
                    "this step"
                )
            elif known[ens_tensor] != model_in[model_tensor]:
                problems.append(
                    f"{where}: step {step.model_name}: {model_tensor!r} expects "
                    f"{describe(model_in[model_tensor])}, {ens_tensor!r} is "
                    f"{describe(known[ens_tensor])}"
                )
        missing = sorted(set(model_in) - set(step.input_map))
        if missing:
            problems.append(f"{where}: step {step.model_name}: inputs {missing} are not mapped")
        for model_tensor, ens_tensor in step.output_map.items():
            if model_tensor not in model_out:
                has = sorted(model_out)
                problems.append(
                    f"{where}: step {step.model_name}: no output {model_tensor!r} (has {has})"
                )
            else:
                known[ens_tensor] = model_out[model_tensor]
    for t in ensemble.output:
        if known.get(t.name) != (t.data_type, list(t.dims)):
            problems.append(
                f"{where}: output {t.name!r} ({describe((t.data_type, list(t.dims)))}) is "
                f"{'never produced' if t.name not in known else describe(known[t.name])}"
            )
    return problems


def describe(tensor: tuple[DataType, list[int]]) -> str:
    return f"{mc.DataType.Name(tensor[0])} {tensor[1]}"
