"""The rules tritonserver applies when it loads a config.pbtxt, checked at `make triton-repo`.

Triton refuses a model whose config breaks one of these, and (with the whole repository loaded
at start) used to refuse to start at all. Checking here turns that into one line naming the
model, the field and the fix, before any server sees the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scripts.runtimes.triton.model_config import ModelConfig, mc


def config_problems(
    config: ModelConfig,
    expected_inputs: list[str] | None = None,
    expected_outputs: list[str] | None = None,
) -> list[str]:
    """Every rule `config` breaks; `expected_*` are the tensor names the artifact declares."""
    where = f"triton model {config.name}"
    problems = [
        *_tensor_problems(where, "input", config.input, config.max_batch_size),
        *_tensor_problems(where, "output", config.output, config.max_batch_size),
        *_batching_problems(where, config),
        *_warmup_problems(where, config),
    ]
    for field, tensors, expected in (
        ("input", config.input, expected_inputs),
        ("output", config.output, expected_outputs),
    ):
        names = [t.name for t in tensors]
        if expected is not None and names != expected:
            problems.append(
                f"{where}: {field} names {names} differ from the artifact's {expected}; "
                "rebuild with `make triton-repo` after `make export`"
            )
    return problems


def _tensor_problems(
    where: str, field: str, tensors: Sequence[mc.ModelInput | mc.ModelOutput], max_batch_size: int
) -> list[str]:
    problems: list[str] = []
    names = [t.name for t in tensors]
    if not tensors:
        problems.append(f"{where}: no {field}s; the spec lists at least one")
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(
            f"{where}: {field} name {name!r} is used twice; tensor names must be unique"
        )
    for t in tensors:
        if not t.dims:
            fix = (
                "a per-sample scalar needs dims: [1] with reshape: { shape: [] }"
                if max_batch_size
                else "give its shape, batch axis included"
            )
            problems.append(f"{where}: {field} {t.name!r}: dims missing ({fix})")
        if any(d == 0 or d < -1 for d in t.dims):
            problems.append(
                f"{where}: {field} {t.name!r}: dims {list(t.dims)} must be positive or -1"
            )
        if (
            t.HasField("reshape")
            and -1 not in t.dims
            and -1 not in t.reshape.shape
            and math.prod(t.dims) != math.prod(t.reshape.shape)
        ):
            problems.append(
                f"{where}: {field} {t.name!r}: reshape {list(t.reshape.shape)} holds a different "
                f"number of elements than dims {list(t.dims)}"
            )
    return problems


def _batching_problems(where: str, config: ModelConfig) -> list[str]:
    problems: list[str] = []
    if config.max_batch_size < 0:
        problems.append(f"{where}: max_batch_size {config.max_batch_size} must be >= 0")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append(
                f"{where}: dynamic_batching with max_batch_size 0; set batching.max_batch_size > 0 "
                "or drop the queue delay"
            )
        too_big = [
            s for s in config.dynamic_batching.preferred_batch_size if s > config.max_batch_size
        ]
        if too_big:
            problems.append(
                f"{where}: preferred_batch_size {too_big} "
                f"above max_batch_size {config.max_batch_size}"
            )
    if any(g.count < 1 for g in config.instance_group):
        problems.append(f"{where}: instance_group count must be >= 1")
    return problems


def _warmup_problems(where: str, config: ModelConfig) -> list[str]:
    dims = {t.name: list(t.dims) for t in config.input}
    problems: list[str] = []
    for warmup in config.model_warmup:
        for name, given in warmup.inputs.items():
            if name not in dims:
                problems.append(
                    f"{where}: warmup {warmup.name!r} feeds {name!r}, which is not an input"
                )
            elif len(given.dims) != len(dims[name]) or any(
                d != -1 and d != g for d, g in zip(dims[name], given.dims)
            ):
                problems.append(
                    f"{where}: warmup {warmup.name!r}: {name!r} dims {list(given.dims)} do not fit "
                    f"the input's {dims[name]}"
                )
    return problems
