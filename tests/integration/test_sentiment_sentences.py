"""sentiment_lstm on free sentences a person would type (tests/sentiment_sentences.py), sent as
plain text to the served model on both runtimes: the text example has to be credible, not
just consistent with its own build."""

from __future__ import annotations

import pytest

from scripts.runtimes.torchserve.client import TorchServeClient
from scripts.runtimes.triton.client import TritonClient, decode_labels
from tests.sentiment_sentences import LABELLED

pytestmark = pytest.mark.integration
BAR = 0.85  # the trained model gets 47/48 (seed 0); a few misses are fine, a coin flip is not


def assert_mostly_right(runtime: str, answers: list[str]) -> None:
    wrong = [(text, want, got) for (text, want), got in zip(LABELLED, answers) if got != want]
    accuracy = 1 - len(wrong) / len(LABELLED)
    print(
        f"{runtime}: {len(LABELLED) - len(wrong)}/{len(LABELLED)} right, wrong: {wrong}"
    )  # shown with -s
    assert accuracy >= BAR, f"{accuracy:.0%} right; wrong (text, expected, answered): {wrong}"


def test_torchserve_labels_free_sentences(torchserve):
    client = TorchServeClient.for_server(torchserve)
    answers = [
        client.predict("sentiment_lstm", text, "text/plain")["label"] for text, _ in LABELLED
    ]
    assert_mostly_right("torchserve", answers)


def test_triton_ensemble_labels_free_sentences(triton):
    client = TritonClient(triton.http_url, "http")
    answers = [
        decode_labels(client.infer("sentiment_lstm_ensemble", {"TEXT": [text.encode()]})["label"])[
            0
        ]
        for text, _ in LABELLED
    ]
    assert_mostly_right("triton", answers)
