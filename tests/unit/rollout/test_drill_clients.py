"""The drill's clients (scripts/measure/traffic.py) on a generation model: a client that names a
version sends that version on every protocol, and an answer is credited to the version it asked
for whenever that version's tokens are what came back (two versions often agree on a prompt).

Found by docs/versions.md's "Open" item: Triton gRPC streams naming version 1 were answered with
version 2's tokens around a switch because they were sent without a version at all."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import tritonclient

from scripts.measure.traffic import Client, GenerationTraffic
from scripts.runtimes.triton import generation_calls as triton_calls


class FakeStreamClient:
    """tritonclient.grpc's InferenceServerClient, recording what each stream request names and
    answering it with one final piece."""

    sent: list[tuple[str, str]] = []

    def __init__(self, url):
        self.callback = None

    def start_stream(self, callback):
        self.callback = callback

    def async_stream_infer(self, model_name, inputs, model_version=""):
        FakeStreamClient.sent.append((model_name, model_version))
        arrays = {
            "text_output": np.array([b" ok"], dtype=np.object_),
            "token_ids": np.array([7]),
            "finish_reason": np.array([b"length"], dtype=np.object_),
        }
        self.callback(SimpleNamespace(as_numpy=arrays.__getitem__), None)

    def stop_stream(self):
        pass

    def close(self):
        pass


class FakeInput:
    def __init__(self, name, shape, datatype):
        self.name = name

    def set_data_from_numpy(self, array):
        pass


def test_a_triton_grpc_stream_that_names_a_version_sends_that_version(monkeypatch):
    fake = types.ModuleType("tritonclient.grpc")
    fake.InferenceServerClient, fake.InferInput = FakeStreamClient, FakeInput
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", fake)
    monkeypatch.setattr(tritonclient, "grpc", fake, raising=False)
    monkeypatch.setattr(FakeStreamClient, "sent", [])
    server = SimpleNamespace(http_url="127.0.0.1:1", grpc_url="127.0.0.1:2")
    spec = SimpleNamespace(name="review_gpt")
    body = {"prompt": "This film", "max_tokens": 4}
    for version in (1, None):
        answer = triton_calls.generation_calls(server, spec, version=version)["triton-grpc-stream"](
            body
        )
        assert answer["token_ids"] == [7] and answer["finish_reason"] == "length"
    assert FakeStreamClient.sent == [("review_gpt", "1"), ("review_gpt", "")]


def test_an_answer_is_credited_to_the_version_asked_for_when_versions_agree():
    # row 0: both versions give the same tokens; row 1: they differ
    expected = {1: [[5, 6], [5, 6]], 2: [[5, 6], [9, 9]]}
    traffic = GenerationTraffic(None, [], expected, [{}, {}])
    assert traffic.whose({"token_ids": [5, 6]}, 0, asked=2) == 2
    assert traffic.whose({"token_ids": [5, 6]}, 0, asked=1) == 1
    assert traffic.whose({"token_ids": [5, 6]}, 0) == 1  # unversioned: the lowest that fits
    assert traffic.whose({"token_ids": [9, 9]}, 1, asked=1) == 2  # a stray shows as one
    assert traffic.whose({"token_ids": [1]}, 1, asked=1) is None


def test_the_drill_records_which_answers_could_tell_the_versions_apart():
    expected = {1: [[5, 6], [5, 6]], 2: [[5, 6], [9, 9]]}
    rows = iter(range(4))

    def connect():
        def call(spec, body):
            if next(rows, None) is None:
                traffic._stop.set()
            return {"token_ids": [5, 6]}

        return call

    client = Client("fake version 1", "fake", 1, connect)
    traffic = GenerationTraffic(None, [client], expected, [{}, {}])
    traffic._run(0, client)
    assert [(a.version, a.decisive) for a in traffic.answers][:2] == [(1, False), (1, True)]
