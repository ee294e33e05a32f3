"""sentiment_lstm: positive/negative reviews from a small generated corpus (no downloads)."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import torch
from torch import nn

from handlers.processing import split_words, tokenize
from models.common import TrainingData

VOCAB_SIZE = 10000

_SUBJECTS = ["the movie", "this film", "the plot", "the acting", "the soundtrack", "the ending",
             "the food", "the service", "this book", "the hotel", "the staff", "the camera",
             "this phone", "the battery", "the screen", "the game", "the story", "the show"]
_POSITIVE = ["good", "great", "excellent", "wonderful", "amazing", "brilliant", "delightful",
             "fantastic", "enjoyable", "superb", "lovely", "charming", "solid", "impressive"]
_NEGATIVE = ["bad", "terrible", "awful", "boring", "horrible", "dull", "disappointing",
             "poor", "weak", "mediocre", "annoying", "painful", "messy", "forgettable"]
_INTENSIFIERS = ["", "", "really", "very", "truly", "quite", "incredibly", "somewhat"]
_ENDINGS = ["", "", ".", "!", "overall.", "in my opinion.", "to be honest.", "and i would say so again."]
_FILLERS = ["", "", "i think", "honestly", "well", "frankly", "after all"]


class SentimentLSTM(nn.Module):
    def __init__(self, vocab_size: int = VOCAB_SIZE, embedding_dim: int = 128,
                 hidden: int = 256, classes: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True)
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(self.embedding(token_ids))
        return self.classifier(hidden[-1])


def generate_review(rng: np.random.Generator) -> tuple[str, int]:
    """One templated review and its label; a negation flips the adjective's polarity."""
    positive = rng.random() < 0.5
    negated = rng.random() < 0.3
    adjective = rng.choice(_POSITIVE if positive != negated else _NEGATIVE)
    words = [rng.choice(_FILLERS), rng.choice(_SUBJECTS), "was", "not" if negated else "",
             rng.choice(_INTENSIFIERS), adjective, rng.choice(_ENDINGS)]
    return " ".join(w for w in words if w), int(positive)


def build_vocab(texts: list[str]) -> list[str]:
    """Most frequent training words; ids 0 and 1 are reserved for padding and unknown words."""
    counts = Counter(word for text in texts for word in split_words(text))  # lower-cased
    return ["<pad>", "<unk>"] + [w for w, _ in counts.most_common(VOCAB_SIZE - 2)]


def load_data(seed: int, preprocess, size: int = 4000) -> TrainingData:
    """`preprocess` is the spec's text pre-processing (sequence length, lower-casing)."""
    rng = np.random.default_rng(seed)
    texts, labels = zip(*(generate_review(rng) for _ in range(size)))
    split = int(0.8 * size)
    tokens = build_vocab(list(texts[:split]))
    vocab = {word: i for i, word in enumerate(tokens)}
    x = np.stack([tokenize(t, vocab, preprocess.max_length, preprocess.lowercase) for t in texts])
    y = np.array(labels, dtype=np.int64)
    requests = {f"review_{i}.txt": texts[i].encode() for i in range(split, split + 3)}
    return TrainingData(x_train=x[:split], y_train=y[:split], x_test=x[split:], y_test=y[split:],
                        assets={"vocab.json": json.dumps({"tokens": tokens})}, requests=requests)
