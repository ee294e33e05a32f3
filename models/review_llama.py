"""review_llama: a teacher big enough to show what int8, distillation, pruning and speculative
decoding buy (models/teacher.yaml; docs/optimisation.md): a Llama-architecture language model of
26M parameters trained on the review sentences shipped for sentiment_lstm (no download).

Why these sentences: they are the only English text on the machine or in the project (1.5 MB,
274k words), and review_gpt's held-out split and golden prompts then judge both models alike.
Why Llama: rotary positions and a q/k/v/o attention whose heads can be pruned (GPT-2's width is
its head count). Its shape (6 layers, 576 wide, 9 heads of 64, 1,536 MLP channels) is sized so
that a half-depth student is 3 layers and a third of the heads (3 of 9) can be cut, and so that
three epochs train in about 20 minutes on 2 cores (~1,100 tokens/s).

The tokenizer and the split are review_gpt's (models/review_gpt.py, seed 0): a byte-level BPE of
2,048 tokens trained on the same training sentences.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from models.review_gpt import BATCH, END, blocks, perplexity, token_stream, train_tokenizer
from models.review_gpt_held_out import held_out_texts, training_texts

SHAPE = {
    "hidden_size": 576,
    "num_hidden_layers": 6,
    "num_attention_heads": 9,
    "num_key_value_heads": 9,
    "intermediate_size": 1536,
    "max_position_embeddings": 128,
}
EPOCHS = 3
LEARNING_RATE = 1e-3


def build_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    end = tokenizer.token_to_id(END)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(), bos_token_id=end, eos_token_id=end, **SHAPE
    )
    return LlamaForCausalLM(config)


def write(out: Path, seed: int = 0) -> dict:
    """`training.script`: train the tokenizer and the model, write the Hugging Face folder `out`
    and return the metrics (held-out perplexity, parameters, training time)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    train_texts, test_texts = training_texts(seed), held_out_texts(seed)
    tokenizer = train_tokenizer(train_texts)
    train_blocks = blocks(token_stream(tokenizer, train_texts))
    test_blocks = blocks(token_stream(tokenizer, test_texts))
    model = build_model(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.1)
    steps = EPOCHS * math.ceil(len(train_blocks) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    for epoch in range(EPOCHS):
        model.train()
        for batch in train_blocks[torch.randperm(len(train_blocks))].split(BATCH):
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(
            f"review_llama epoch {epoch + 1}/{EPOCHS}: held-out perplexity "
            f"{perplexity(model, test_blocks):.2f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))
    metrics = {
        "held_out_perplexity": round(perplexity(model, test_blocks), 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_tokens": int(train_blocks.numel()),
        "epochs": EPOCHS,
        "training_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
