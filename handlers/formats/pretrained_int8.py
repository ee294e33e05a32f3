"""int8 Hugging Face folder: the verified folder's causal LM with its Linear layers (GPT-2's
Conv1D layers first turned into the Linear they are) run by torch's int8 kernels: int8 weights
per output channel, each input row quantised at run time on its own scale
(handlers/formats/int8_linear.py). Made at load from the same folder, so at rest it is the
fp32 folder plus the recipe (int8.json: the layers kept fp32): torch's packed int8 weights are
not a safetensors tensor, and a pickled state_dict would need an unsafe `weights_only=False`
load. scripts/pipeline/quantize_generation.py gates it (perplexity, agreement with fp32)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.formats.pretrained import Pretrained

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class PretrainedInt8(Pretrained):
    name = "pretrained_int8"
    title = "int8 Hugging Face folder"
    quantized_from = "pretrained"  # the same folder, verified as fp32 first

    def load_causal_lm(self, folder: Path) -> PreTrainedModel:
        from handlers.formats.int8_linear import int8_linear

        return int8_linear(super().load_causal_lm(folder), kept_fp32(folder))


# written into the folder by the build: the layers the gate wanted kept fp32
RECIPE = "int8.json"


def kept_fp32(folder: Path) -> list[str]:
    recipe = folder / RECIPE
    return json.loads(recipe.read_text())["keep_fp32"] if recipe.exists() else []


def write_recipe(folder: Path, keep_fp32: list[str]) -> None:
    (folder / RECIPE).write_text(json.dumps({"keep_fp32": keep_fp32}) + "\n")
