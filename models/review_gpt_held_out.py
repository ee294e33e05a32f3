"""The sentences review_gpt's training held out: what a language model's int8 gate measures
perplexity and top-1 agreement on (models.yaml: review_gpt's `quantize.texts`).

Version 1's split (models/review_gpt.py, seed 0), read again here: a separate module so that
version 1's training code, recorded in its build, is not changed by its int8 variant's gate.
"""

from __future__ import annotations

import numpy as np

from models.review_gpt import HELD_OUT
from models.sentiment import DATA_DIR, read_sentences


def held_out_texts(seed: int = 0) -> list[str]:
    texts, _ = read_sentences(DATA_DIR)
    order = np.random.default_rng(seed).permutation(len(texts))
    split = len(texts) - int(HELD_OUT * len(texts))
    return [texts[i] for i in order[split:]]
