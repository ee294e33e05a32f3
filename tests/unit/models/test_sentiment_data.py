"""The sentiment corpus shipped in models/data/sentiment/ and what load_data makes of it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from handlers.preprocessing.processing import split_words
from models.sentiment import DATA_DIR, VOCAB_SIZE, SentimentLSTM, load_data, read_sentences
from tests.sentiment_sentences import LABELLED, NEGATIVE, POSITIVE

SIZES = {
    "amazon.tsv": 987,
    "imdb.tsv": 996,
    "yelp.tsv": 996,
    "rt_polarity.tsv": 10662,
}  # after de-duplication


def words(text: str) -> str:
    """Lower-cased words only, so punctuation and spacing differences do not hide a match."""
    return " ".join(w for w in split_words(text) if any(c.isalnum() for c in w))


@pytest.fixture(scope="module")
def corpus():
    return read_sentences()


def test_every_file_is_label_tab_sentence_in_clean_utf8():
    assert sorted(p.name for p in DATA_DIR.glob("*.tsv")) == sorted(SIZES)
    for name, size in SIZES.items():
        text = (DATA_DIR / name).read_bytes().decode("utf-8")
        lines = text.split("\n")
        assert lines[-1] == "" and len(lines) - 1 == size == len(text.splitlines()), name
        for line in lines[:-1]:
            label, sentence = line.split("\t")
            assert label in ("0", "1") and sentence == sentence.strip() and sentence, (name, line)
            assert all(c.isprintable() for c in sentence), (name, line)


def test_labels_are_balanced_and_sentences_unique(corpus):
    texts, labels = corpus
    assert len(texts) == sum(SIZES.values())
    assert 0.48 < np.mean(labels) < 0.52
    assert len({t.lower() for t in texts}) == len(texts)


def test_no_hand_written_sentence_is_in_the_training_data(corpus):
    data = "\n".join(f" {words(t)} " for t in corpus[0])  # one string: 48 searches, not 48 x 13,641
    for sentence, _ in LABELLED:
        assert f" {words(sentence)} " not in data, sentence  # not even inside a longer sentence


def test_hand_written_sentences_are_balanced_and_distinct():
    assert len(POSITIVE) >= 20 and len(NEGATIVE) >= 20 and abs(len(POSITIVE) - len(NEGATIVE)) <= 2
    assert len({words(s) for s, _ in LABELLED}) == len(LABELLED)


def test_load_data_is_deterministic_and_keeps_a_held_out_split():
    preprocess = SimpleNamespace(max_length=32, lowercase=True)
    data, again = load_data(0, preprocess), load_data(0, preprocess)
    assert np.array_equal(data.x_train, again.x_train) and data.assets == again.assets
    assert data.x_train.shape[1] == data.x_test.shape[1] == 32 and data.x_train.dtype == np.int64
    assert len(data.x_train) + len(data.x_test) == sum(SIZES.values())
    assert len(data.x_test) == len(data.y_test) == sum(SIZES.values()) // 10
    assert set(np.unique(data.y_train)) == {0, 1} and data.x_train.max() < VOCAB_SIZE
    assert json.loads(data.assets["vocab.json"])["tokens"][:2] == ["<pad>", "<unk>"]
    assert all(
        w.isascii() for w in json.loads(data.assets["vocab.json"])["tokens"]
    )  # see build_vocab
    assert "review_3200.txt" in data.requests  # tests/unit/handlers/test_triton_model.py reads it


def test_padding_alone_gives_finite_logits():
    model = SentimentLSTM().eval()
    with torch.inference_mode():
        assert torch.isfinite(model(torch.zeros(2, 32, dtype=torch.int64))).all()
