"""sentiment_lstm: positive/negative English review sentences, trained on real labelled text
shipped in models/data/sentiment/ (see its README for sources and terms; no downloads)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from handlers.preprocessing.processing import PAD_ID, split_words, tokenize
from scripts.pipeline.training_data import TrainingData

VOCAB_SIZE = 10000
DATA_DIR = Path(__file__).parent / "data" / "sentiment"
HELD_OUT = 0.1  # share of the shuffled sentences kept out of training for metrics.json


class SentimentLSTM(nn.Module):
    """Embedding -> LSTM -> mean of the real words' outputs -> linear.

    Averaging every word's output (not only the last state) lets a decisive phrase anywhere in
    the sentence count, and the pad positions (before the words: `tokenize` left-pads) are left
    out of the mean. On the hand-written sentences in tests/sentiment_sentences.py this beat both
    the last state and a max over positions, over 3 seeds.
    """

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        embedding_dim: int = 128,
        hidden: int = 256,
        classes: int = 2,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)  # only while training: small data, big model
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(self.dropout(self.embedding(token_ids)))
        real = (token_ids != PAD_ID).unsqueeze(-1).to(outputs.dtype)
        # clamp: an all-pad row averages to zeros instead of 0/0
        mean = (outputs * real).sum(dim=1) / real.sum(dim=1).clamp_min(1.0)
        return self.classifier(self.dropout(mean))


def read_sentences(data_dir: Path = DATA_DIR) -> tuple[list[str], list[int]]:
    """Every `label<TAB>sentence` line of the shipped TSV files, in a fixed file order."""
    texts, labels = [], []
    for path in sorted(data_dir.glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            label, text = line.split("\t")
            texts.append(text)
            labels.append(int(label))
    return texts, labels


def build_vocab(texts: list[str]) -> list[str]:
    """Most frequent training words; ids 0 and 1 are reserved for padding and unknown words.

    ASCII words only: `split_words` cuts accented letters out as one-letter tokens (café ->
    caf, é), which say nothing about sentiment; and the vocabulary lands in serving_plan.json,
    which ServingPlan.load reads in the locale's encoding: ASCII in tritonserver's Python
    backend."""
    counts = Counter(
        word for text in texts for word in split_words(text) if word.isascii()
    )  # lower-cased
    return ["<pad>", "<unk>"] + [w for w, _ in counts.most_common(VOCAB_SIZE - 2)]


def load_data(seed: int, preprocess, data_dir: Path = DATA_DIR) -> TrainingData:
    """`preprocess` is the spec's text pre-processing (sequence length, lower-casing)."""
    texts, labels = read_sentences(data_dir)
    order = np.random.default_rng(seed).permutation(len(texts))
    texts, y = [texts[i] for i in order], np.array(labels, dtype=np.int64)[order]
    split = len(texts) - int(HELD_OUT * len(texts))
    tokens = build_vocab(texts[:split])  # from the training part only: held-out words stay unknown
    vocab = {word: i for i, word in enumerate(tokens)}
    x = np.stack([tokenize(t, vocab, preprocess.max_length, preprocess.lowercase) for t in texts])
    # Named review_3200.. as before: tests/unit/handlers/test_triton_model.py reads review_3200.txt.
    requests = {f"review_{3200 + i}.txt": texts[split + i].encode() for i in range(3)}
    return TrainingData(
        x_train=x[:split],
        y_train=y[:split],
        x_test=x[split:],
        y_test=y[split:],
        assets={"vocab.json": json.dumps({"tokens": tokens})},
        requests=requests,
    )
