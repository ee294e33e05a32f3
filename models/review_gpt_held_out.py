"""The sentences review_gpt's training held out (what its int8 gate and its distilled student's
gate measure perplexity on: models.yaml) and those it trained on (what the student trains on).

Version 1's split (models/review_gpt.py, seed 0), read again here: a separate module so that
version 1's training code, recorded in its build, is not changed by its int8 variant's gate.
"""

from __future__ import annotations

import numpy as np

from models.review_gpt import HELD_OUT
from models.sentiment import DATA_DIR, read_sentences


def held_out_texts(seed: int = 0) -> list[str]:
    texts, order, split = shuffled(seed)
    return [texts[i] for i in order[split:]]


def training_texts(seed: int = 0) -> list[str]:
    """The sentences version 1 trained on: what a distilled student trains on."""
    texts, order, split = shuffled(seed)
    return [texts[i] for i in order[:split]]


def shuffled(seed: int) -> tuple[list[str], np.ndarray, int]:
    texts, _ = read_sentences(DATA_DIR)
    order = np.random.default_rng(seed).permutation(len(texts))
    return texts, order, len(texts) - int(HELD_OUT * len(texts))
