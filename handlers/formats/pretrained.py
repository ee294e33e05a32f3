"""A generation model's Hugging Face folder (config, safetensors, tokenizer), as written by
save_pretrained: the generation engine (handlers/engines/completions.py) loads it, not a tensor
runner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from handlers.formats.base import Format, Runner

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class Pretrained(Format):
    name = "pretrained"
    title = "Hugging Face folder"
    file = "pretrained"
    engine = "transformers"
    encryptable = False  # a folder, copied as it is
    measured = False
    generation = True

    def load_causal_lm(self, folder: Path) -> PreTrainedModel:
        """The folder's causal LM in eval mode, its weights views of the memory-mapped
        safetensors file (so workers serving the same file share one copy in the page cache)."""
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a worker's log is not a terminal
        return AutoModelForCausalLM.from_pretrained(folder).eval()  # pyright: ignore[reportUnknownMemberType]  transformers' kwargs are untyped

    def runner(
        self,
        path: str | Path,
        input_names: list[str],
        threads: int | None,
        output_names: list[str] | None,
        plain: bytes | None,
    ) -> Runner:
        raise ValueError(
            "format 'pretrained' is a language model's Hugging Face folder: the generation "
            "engine loads it (handlers/engines/completions.py), not a tensor runner"
        )
