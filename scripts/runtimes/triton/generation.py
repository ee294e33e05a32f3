"""A generation model on Triton: one decoupled Python model speaking the tensor contract of
Triton's vLLM backend, so NVIDIA's clients (tritonclient streams, `generate` /
`generate_stream`, genai-perf) work with it unchanged.

Inputs `text_input` (BYTES), `stream` (BOOL), `sampling_parameters` (BYTES: a JSON object with
max_tokens, temperature, top_p, top_k, seed, stop, logprobs, the penalties, ...),
`exclude_input_in_output` (BOOL) and the backend's `return_*` flags (BOOL); outputs
`text_output` (BYTES) plus `token_ids` (INT64) and `finish_reason` (BYTES), which are ours, and
the optional ones (handlers/protocols/vllm_tensors.py).
`max_batch_size: 0` as in vLLM's own config: requests are batched by the decode loop (in-flight,
handlers/engines/generating.py), not by Triton's scheduler. Decoupled models take no warmup here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from scripts.pipeline.paths import link_or_copy
from scripts.runtimes.triton.model_config import ModelConfig, mc

from handlers.plan import ServingPlan
from scripts.runtimes.triton.configs import base_config, set_role

INPUTS = [  # name, datatype, optional
    ("text_input", mc.TYPE_STRING, False),
    ("stream", mc.TYPE_BOOL, True),
    ("sampling_parameters", mc.TYPE_STRING, True),
    ("exclude_input_in_output", mc.TYPE_BOOL, True),
    ("return_finish_reason", mc.TYPE_BOOL, True),
    ("return_cumulative_logprob", mc.TYPE_BOOL, True),
    ("return_logprobs", mc.TYPE_BOOL, True),
    ("return_num_input_tokens", mc.TYPE_BOOL, True),
    ("return_num_output_tokens", mc.TYPE_BOOL, True),
]
OUTPUTS = [
    ("text_output", mc.TYPE_STRING),
    ("token_ids", mc.TYPE_INT64),
    ("finish_reason", mc.TYPE_STRING),
    ("cumulative_logprob", mc.TYPE_FP32),
    ("logprobs", mc.TYPE_STRING),
    ("num_input_tokens", mc.TYPE_UINT32),
    ("num_output_tokens", mc.TYPE_UINT32),
]


def generation_config(plan: ServingPlan) -> ModelConfig:
    config = base_config(plan, plan.name, backend="python")
    config.max_batch_size = 0
    config.ClearField("dynamic_batching")
    config.model_transaction_policy.decoupled = True
    for name, datatype, optional in INPUTS:
        config.input.add(name=name, data_type=datatype, dims=[1], optional=optional)
    for name, datatype in OUTPUTS:
        config.output.add(name=name, data_type=datatype, dims=[-1])
    set_role(config, "model")
    return config


def stage_folder(artifact: Path, version_dir: Path) -> None:
    """The Hugging Face folder beside model.py, as the serving plan names it (linked where the
    file system allows: the repository only reads the weights)."""
    shutil.copytree(artifact, version_dir / artifact.name, copy_function=link_or_copy)
