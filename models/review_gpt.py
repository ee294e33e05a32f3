"""review_gpt: a GPT-2-architecture language model of review sentences, trained at build time.

The sentences are the ones shipped for sentiment_lstm (models/data/sentiment/, no download). A
byte-level BPE tokenizer is trained on them with Hugging Face `tokenizers`, a small GPT-2 is
built from a `transformers` config and trained on the sentences, each ended by
`<|endoftext|>`, and both are written as a Hugging Face folder (`config.json`,
`model.safetensors`, `generation_config.json`, `tokenizer.json`): what `save_pretrained`
writes, so the same code path serves a user's fine-tuned checkpoint. Held-out perplexity goes
to metrics.json: 101.7 after 4 epochs, trained in 158 s on 2 cores (0.87M parameters, 422k
training tokens). Greedy: "The food was" -> "The food was very good."

In models.yaml as `review_gpt` (task kind generation): `training.script` calls `write`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from models.sentiment import DATA_DIR, read_sentences

END = "<|endoftext|>"
VOCAB_SIZE = 2048
CONTEXT = 128  # positions: the longest prompt plus continuation the model serves
BLOCK = 64  # training sequence length (sentences packed end to end)
HELD_OUT = 0.05
EPOCHS = 4
BATCH = 32
LEARNING_RATE = 3e-3
SHAPE = {"n_layer": 3, "n_head": 4, "n_embd": 128}  # sized to train in 5 minutes on 2 cores


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """Every sentence's ids followed by the end token, end to end."""
    end = tokenizer.token_to_id(END)
    ids = [i for encoding in tokenizer.encode_batch(texts) for i in [*encoding.ids, end]]
    return torch.tensor(ids, dtype=torch.long)


def blocks(stream: torch.Tensor) -> torch.Tensor:
    usable = len(stream) // BLOCK * BLOCK
    return stream[:usable].view(-1, BLOCK)


class ReviewGPT:
    """A GPT-2 language model built from plain keyword arguments: a `source.module` class for a
    generation model given as module + checkpoint (a state_dict) + tokenizer.json."""

    def __new__(cls, **config):
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config(**config))


def build_model(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    end = tokenizer.token_to_id(END)
    config = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=CONTEXT,
        bos_token_id=end,
        eos_token_id=end,
        **SHAPE,
    )
    return GPT2LMHeadModel(config)


@torch.no_grad()
def perplexity(model, data: torch.Tensor) -> float:
    model.eval()
    losses = [float(model(input_ids=batch, labels=batch).loss) for batch in data.split(BATCH)]
    return math.exp(sum(losses) / len(losses))


def train(out: Path, seed: int = 0, data_dir: Path = DATA_DIR, epochs: int = EPOCHS) -> dict:
    """Train the tokenizer and the model; write the Hugging Face folder `out` and return the
    metrics (held-out perplexity, parameters, training time)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    texts, _ = read_sentences(data_dir)
    order = np.random.default_rng(seed).permutation(len(texts))
    texts = [texts[i] for i in order]
    split = len(texts) - int(HELD_OUT * len(texts))
    tokenizer = train_tokenizer(texts[:split])
    train_blocks = blocks(token_stream(tokenizer, texts[:split]))
    test_blocks = blocks(token_stream(tokenizer, texts[split:]))
    model = build_model(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    steps = epochs * math.ceil(len(train_blocks) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for batch in train_blocks[torch.randperm(len(train_blocks))].split(BATCH):
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))
    metrics = {
        "held_out_perplexity": round(perplexity(model, test_blocks), 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_tokens": int(train_blocks.numel()),
        "epochs": epochs,
        "training_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def write(out: Path, seed: int = 0) -> dict:
    """`training.script`'s call: the Hugging Face folder `out`, and the metrics for the table."""
    return train(out, seed)
