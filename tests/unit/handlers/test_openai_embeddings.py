"""Task kind embedding and OpenAI's /v1/embeddings through TorchServe's one-pass handler (fake
context, a TorchScript mean-pooling embedder and a WordPiece tokenizer written here): answers
carry each example's vector beside its outputs, the route after the version picks the protocol
only for a model whose kind offers it, and what is not served is refused by name with a 400."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from torch import nn

from handlers.adapters.torchserve_handler import SpecHandler
from handlers.formats import FORMATS
from handlers.plan import ServingPlan, TaskPlan
from handlers.preprocessing.processing import RequestError, l2_normalized
from handlers.protocols import forward_by_route
from handlers.protocols.openai_embeddings import OpenAIEmbeddings
from handlers.tasks import SERVING_TASKS
from models.zoo.text import tokenizer_assets
from tests.fakes import FakeTorchServeContext

ROUTE = "v1/embeddings"
TEXTS = ["a great film", "the battery died after two days"]


class MeanPool(nn.Module):
    """Token vectors averaged over the real tokens: one vector per text."""

    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(300, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        return (self.table(input_ids) * mask).sum(dim=1) / mask.sum(dim=1)


@pytest.fixture(scope="module")
def tokenizer() -> str:
    return tokenizer_assets(300)["tokenizer.json"]


def plan_of(tokenizer: str, task: dict, preprocess: dict | None = None) -> ServingPlan:
    return ServingPlan.model_validate(
        {
            "name": "embedder",
            "version": 1,
            "format": "torchscript",
            "inputs": [
                {"name": "input_ids", "dtype": "int64", "shape": [-1, -1], "range": [0, 299]},
                {"name": "attention_mask", "dtype": "int64", "shape": [-1, -1], "range": [0, 1]},
            ],
            "outputs": [{"name": "vector", "dtype": "float32", "shape": [-1, 4]}],
            "task": task,
            "preprocess": preprocess
            or {"kind": "tokenizer", "tokenizer": "tokenizer.json", "max_length": 16},
            "assets": {"tokenizer": tokenizer},
            "batching": {"max_batch_size": 4, "pad": {"value": 0, "mask": "attention_mask"}},
            "serving": {},
        }
    )


@pytest.fixture(scope="module")
def served(tokenizer, tmp_path_factory):
    """{normalize: (handler, eager model, plan)}: the embedder served with and without it."""
    torch.manual_seed(0)
    model = MeanPool().eval()
    example = (torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    loaded = {}
    for normalize in (True, None):
        folder = tmp_path_factory.mktemp(f"embedder_{normalize}")
        plan = plan_of(tokenizer, {"kind": "embedding", "normalize": normalize})
        plan.save(folder)
        torch.jit.trace(model, example).save(str(folder / FORMATS["torchscript"].file))
        handler = SpecHandler()
        handler.initialize(FakeTorchServeContext(folder, []))
        loaded[normalize] = handler, model, plan
    return loaded


def call(handler, bodies: list, routes: list[str | None]) -> tuple[list, list[int]]:
    context = FakeTorchServeContext(None, ["application/json"] * len(bodies))
    context.url_paths = {i: r for i, r in enumerate(routes) if r is not None}
    answers = handler.handle([{"body": json.dumps(b).encode()} for b in bodies], context)
    return [json.loads(a) for a in answers], [
        context.statuses.get(i, 200) for i in range(len(bodies))
    ]


def eager(model, plan: ServingPlan, texts: list[str]) -> np.ndarray:
    rows = plan.kind().json_inputs(texts, plan.inputs, 4)[0]
    with torch.no_grad():
        return model(*(torch.from_numpy(rows[n]) for n in plan.input_names)).numpy()


def test_answers_carry_the_normalised_embedding_beside_the_raw_outputs(served):
    handler, model, plan = served[True]
    (answers,), _ = call(handler, [{"inputs": TEXTS}], [None])
    want = eager(model, plan, TEXTS)
    raw = np.array([a["outputs"]["vector"] for a in answers])
    np.testing.assert_allclose(raw, want, atol=1e-6)  # the outputs as the model made them
    vectors = np.array([a["embedding"] for a in answers])
    np.testing.assert_allclose(vectors, l2_normalized(want), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_without_normalize_the_embedding_is_the_output_itself(served):
    handler, _, _ = served[None]
    (answers,), _ = call(handler, [{"inputs": TEXTS}], [None])
    assert all(a["embedding"] == a["outputs"]["vector"] for a in answers)


def test_embedding_output_names_the_vector():
    answers = [{"outputs": {"scores": [1.0], "vector": [3.0, 4.0]}}]
    task = TaskPlan(kind="embedding", embedding_output="vector", normalize=True)
    SERVING_TASKS["embedding"].label(answers, [], task)
    assert answers[0]["embedding"] == [0.6, 0.8]


def test_v1_embeddings_answers_in_openai_shape(served):
    handler, _, plan = served[True]
    own, openai_list, openai_one = call(
        handler,
        [{"inputs": TEXTS}, {"input": TEXTS, "model": "mine"}, {"input": TEXTS[0]}],
        [None, ROUTE, "/" + ROUTE + "/"],
    )[0]
    assert set(openai_list) == {"object", "data", "model", "usage"}
    assert openai_list["object"] == "list" and openai_list["model"] == "mine"
    assert [d["index"] for d in openai_list["data"]] == [0, 1]
    assert {d["object"] for d in openai_list["data"]} == {"embedding"}
    assert [d["embedding"] for d in openai_list["data"]] == [a["embedding"] for a in own]
    tokens = int(plan.kind().json_inputs(TEXTS, plan.inputs, 4)[0]["attention_mask"].sum())
    assert openai_list["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert openai_one["model"] == "embedder"  # the served model's name when the request has none
    assert openai_one["data"][0]["embedding"] == own[0]["embedding"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"input": "x", "encoding_format": "int8"}, "encoding_format: 'int8' is not served"),
        ({"input": [101, 2023]}, "input: token ids are not served"),
        ({"input": [[101, 2023]]}, "input: token ids are not served"),
        ({"input": "x", "dimensions": 2}, "dimensions: not served"),
        ({"input": "x", "temperature": 1}, "unknown field(s) ['temperature']"),
        ({"model": "m"}, "input: missing"),
        ({"input": []}, "input: send a string or a non-empty list of strings"),
        ({"input": ["x", 1.5]}, "input[1]: expected a string, got float"),
        ({"input": ["x"] * 5}, "5 examples in one request; at most 4"),
        ({"input": ""}, "empty text"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_what_is_not_served_is_refused_by_name(served, body, message):
    handler, _, _ = served[True]
    (refused, fine), statuses = call(handler, [body, {"input": "fine"}], [ROUTE, ROUTE])
    assert statuses == [400, 200]  # the other request of the batch is answered
    assert message in refused["message"], refused
    assert fine["data"][0]["index"] == 0


def test_a_route_the_model_does_not_answer_names_what_it_does(served):
    handler, _, _ = served[True]
    (refused,), statuses = call(handler, [{"prompt": "x"}], ["v1/completions"])
    assert statuses == [400]
    assert refused["message"] == (
        "unknown route 'v1/completions' for embedder; it answers its own JSON at "
        "/predictions/embedder[/<version>] and ['v1/embeddings'] after its version"
    )


@pytest.mark.parametrize(
    "task, preprocess",
    [({"kind": "raw"}, None), ({"kind": "embedding"}, {"kind": "none"})],
    ids=["kind that does not offer it", "embedding model without text"],
)
def test_v1_embeddings_only_for_an_embedding_model_from_text(tokenizer, task, preprocess):
    plan = plan_of(tokenizer, task, preprocess)
    with pytest.raises(RequestError) as refused:
        forward_by_route(ROUTE, plan)
    assert str(refused.value) == (
        "unknown route 'v1/embeddings' for embedder (v1/embeddings needs task kind embedding "
        "with a text pre-processing); it answers its own JSON at /predictions/embedder[/<version>] "
        "and no route after its version"
    )


def test_the_model_s_own_route_takes_no_protocol(tokenizer):
    plan = plan_of(tokenizer, {"kind": "embedding"})
    assert forward_by_route(None, plan) is None and forward_by_route("/", plan) is None
    assert isinstance(forward_by_route(ROUTE, plan), OpenAIEmbeddings)


def test_base64_vectors_are_little_endian_float32_as_the_openai_client_decodes_them(served):
    handler, _, _ = served[True]
    floats, packed = call(
        handler,
        [{"input": TEXTS[0]}, {"input": TEXTS[0], "encoding_format": "base64"}],
        [ROUTE, ROUTE],
    )[0]
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, np.float32(floats["data"][0]["embedding"]))
