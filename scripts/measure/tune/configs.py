"""The tuner's configurations: the spec's serving settings as a flat dict, the axes swept one
at a time from the spec's own settings, and each configuration as a spec entry of its own
(`<model>_tNN`), served through scripts/measure/variants.py."""

from __future__ import annotations

import json

from handlers.formats import FORMATS
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import exported_formats
from scripts.pipeline.plan import serving_plan
from scripts.runtimes.registry import RUNTIMES
from scripts.spec import ModelSpec
from scripts.spec.schema import Workers

# Values each axis takes; an axis that a model cannot vary (batching when max_batch_size is 0,
# a format not exported or not gated) is dropped for it.
AXES = {
    "max_queue_delay_ms": [0, 0.5, 1, 2],
    "dynamic": [True, False],  # off: no batcher for one client, no batches for many
    "max_batch_size": [8, 32, 64],
    "instances": [1, 2],
    "workers": [1, 2],
    "threads": [1, 2],
    "format": [f.name for f in FORMATS.values() if f.measured],
}
SHARED = (
    "max_batch_size",
    "max_queue_delay_ms",
    "dynamic",
    "threads",
    "format",
)  # what per_runtime may override


def settings_of(spec: ModelSpec) -> dict:
    return {
        "max_batch_size": spec.batching.max_batch_size,
        "max_queue_delay_ms": spec.batching.max_queue_delay_ms,
        "dynamic": spec.batching.dynamic,
        "format": spec.serving.format,
        "threads": spec.serving.threads,
        "instances": spec.serving.instances,
        "workers": spec.serving.workers.min,
    }


def axes_for(spec: ModelSpec, layout: Layout, runtime) -> dict[str, list]:
    """The axes this runtime can vary for the model: another runtime's replicas are not its own."""
    others = {r.replicas for r in RUNTIMES.values()} - {runtime.replicas}
    formats = set(exported_formats(spec, layout))
    axes = {k: list(v) for k, v in AXES.items() if k not in others}
    axes["format"] = [f for f in axes["format"] if f in formats]
    if spec.batching.max_batch_size == 0:
        del axes["max_batch_size"], axes["max_queue_delay_ms"], axes["dynamic"]
    return axes


def one_axis_at_a_time(base: dict, axes: dict[str, list]) -> list[dict]:
    """The base first, then each axis's other values with everything else as in the base."""
    configs = [dict(base)]
    for axis, values in axes.items():
        configs += [{**base, axis: v} for v in values if v != base[axis]]
    return configs


def spec_for(spec: ModelSpec, settings: dict, name: str) -> ModelSpec:
    """The spec entry `name` serving with these settings (tensors, task, version unchanged)."""
    mbs = settings["max_batch_size"]
    batching = spec.batching.model_copy(
        update={
            "max_batch_size": mbs,
            "max_queue_delay_ms": settings["max_queue_delay_ms"],
            "dynamic": settings["dynamic"],
            "preferred_batch_sizes": [b for b in spec.batching.preferred_batch_sizes if b <= mbs],
        }
    )
    workers = settings["workers"]
    serving = spec.serving.model_copy(
        update={
            "format": settings["format"],
            "threads": settings["threads"],
            "instances": settings["instances"],
            "workers": Workers(min=workers, max=max(workers, spec.serving.workers.max)),
        }
    )
    return spec.model_copy(
        update={"name": name, "batching": batching, "serving": serving, "per_runtime": {}}
    )


def spec_fields(spec: ModelSpec, choices: dict[str, dict]) -> dict:
    """The per-runtime choices as the spec entry's fields: a setting all runtimes chose alike
    (and all were tuned) at the top level, one that differs under per_runtime; each runtime's
    replicas (Triton's instances, TorchServe's workers) from its own choice. Runtimes not tuned
    keep what they serve today."""
    top = settings_of(spec)
    tuned_all = set(choices) >= set(RUNTIMES)
    for field in SHARED:
        values = {c[field] for c in choices.values()}
        if tuned_all and len(values) == 1:
            top[field] = values.pop()
    for runtime in RUNTIMES.values():
        if runtime.name in choices:
            top[runtime.replicas] = choices[runtime.name][runtime.replicas]
    per_runtime = {
        r: s.model_dump(exclude_none=True) for r, s in spec.per_runtime.items() if r not in choices
    }
    for runtime, chosen in choices.items():
        differs = {f: chosen[f] for f in SHARED if chosen[f] != top[f]}
        if differs:
            per_runtime[runtime] = differs
    workers = {
        "min": top["workers"],
        "max": max(top["workers"], spec.serving.workers.max),
    }  # as measured
    fields = {
        "serving": {
            "format": top["format"],
            "threads": top["threads"],
            "instances": top["instances"],
            "workers": workers,
        }
    }
    if top["max_batch_size"]:
        fields = {
            "batching": {
                "max_batch_size": top["max_batch_size"],
                "max_queue_delay_ms": top["max_queue_delay_ms"],
                **({} if top["dynamic"] else {"dynamic": False}),
            },
            **fields,
        }
    return {**fields, "per_runtime": per_runtime} if per_runtime else fields


def runtime_key(runtime, variant: ModelSpec, scratch: Layout) -> str:
    """What the runtime would actually run: its own settings, threads and format. Two
    configurations with one key are measured once on that runtime."""
    settings = runtime.artifacts.translate(serving_plan(variant, scratch)).settings
    return json.dumps(
        {
            **settings,
            "threads": variant.serving.threads,
            "format": runtime.artifacts.served_format(variant, scratch),
        },
        sort_keys=True,
    )
