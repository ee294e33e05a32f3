"""A generation model's Hugging Face folder (config, safetensors, tokenizer), as written by
save_pretrained: the generation engine (handlers/engines/completions.py) loads it, not a tensor
runner."""

from __future__ import annotations

from pathlib import Path

from handlers.formats.base import Format, Runner


class Pretrained(Format):
    name = "pretrained"
    title = "Hugging Face folder"
    file = "pretrained"
    engine = "transformers"
    encryptable = False  # a folder, copied as it is
    measured = False
    generation = True

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
