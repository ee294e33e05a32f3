"""zoo_gpt2_small: a language model at a realistic size, GPT-2 small's dimensions (12 layers,
768 wide, 12 heads, 1,024 positions, a 50,257-token vocabulary: 124M parameters, 475 MiB of
safetensors) with seeded random weights, written at build time as a Hugging Face folder.

It is here for its size, not its text: the serving path (export verification against
generate(), archive, both runtimes, memory shared between workers) at the size people deploy.
The tokenizer is review_gpt's byte-level BPE, padded with unused tokens to GPT-2's vocabulary,
so every id the model can pick decodes to text.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.review_gpt import END, train_tokenizer
from models.sentiment import DATA_DIR, read_sentences

GPT2_SMALL = {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024}
VOCAB = 50_257


def write(out: Path, seed: int = 0) -> dict:
    """`training.script`: the folder `out` (config.json, model.safetensors, tokenizer.json)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    texts, _ = read_sentences(DATA_DIR)
    tokenizer = train_tokenizer(texts)
    tokenizer.add_tokens([f"<|unused{i}|>" for i in range(VOCAB - tokenizer.get_vocab_size())])
    end = tokenizer.token_to_id(END)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, bos_token_id=end, eos_token_id=end, **GPT2_SMALL)
    model = GPT2LMHeadModel(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))
    return {"parameters": sum(p.numel() for p in model.parameters()), "weights": "seeded random"}
