"""A tiny GPT-2 and BPE tokenizer saved as a Hugging Face folder, the language model over it,
and TorchServe's continuous-batching handler on it with a fake context: what the generation
handler tests drive without a runtime."""

from __future__ import annotations

import pytest

from handlers.engines.completions import LanguageModel
from handlers.engines.generating import Generating
from handlers.plan import Generation

TEXT = ["the battery lasts all day.", "this film is great.", "the food was very good."] * 20
LIMITS = Generation(max_tokens=8, max_tokens_limit=16, context_length=32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_gpt(tmp_path_factory.mktemp("hf"))


def train_tiny_gpt(folder, out):
    """The tiny GPT-2 of `folder` trained a little on TEXT (so its perplexity means something),
    written to `out`."""
    import torch

    from handlers.formats import folder_format

    model = folder_format("pretrained").load_causal_lm(folder)
    language = LanguageModel(folder, LIMITS.model_copy(update={"end_token": 0}))
    ids = torch.tensor([t for text in TEXT for t in [*language.encode(text), 0]][:512])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(60):
        loss = model(input_ids=ids.view(8, -1), labels=ids.view(8, -1)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(out)
    (out / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    return out


def write_tiny_gpt(out):
    """A seeded, untrained two-layer GPT-2 and its tokenizer as a Hugging Face folder `out`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from models.review_gpt import train_tokenizer

    tokenizer = train_tokenizer(TEXT, vocab_size=300)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=4
    )
    GPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))
    return out


@pytest.fixture(scope="module")
def language(folder):
    return LanguageModel(folder, LIMITS)


def drain(generating: Generating) -> dict:
    pieces = {}
    while generating.busy:
        for key, made in generating.step().items():
            pieces.setdefault(key, []).extend(made)
    return pieces


class Context:
    """What TorchServe's context gives a continuous-batching handler."""

    def __init__(self, folder):
        self.system_properties = {"model_dir": str(folder)}
        self.request_ids, self.statuses, self.stopping_criteria = {}, {}, None
        self.url_paths = {}

    def set_response_content_type(self, idx, value):
        pass

    def get_request_header(self, idx, key):
        return self.url_paths.get(idx) if key == "url_path" else None

    def set_response_status(self, code=200, phrase="", idx=0):
        self.statuses[idx] = code


@pytest.fixture
def handler(folder, tmp_path):
    import shutil

    from handlers.plan import ServingPlan
    from handlers.adapters.torchserve_handler import SpecHandler
    from tests.conftest import EXAMPLES

    spec = next(m for m in EXAMPLES if m.task.generation is not None)
    shutil.copytree(folder, tmp_path / "pretrained")
    plan = ServingPlan(
        name="tiny",
        version=1,
        format="pretrained",
        inputs=spec.inputs,
        outputs=spec.outputs,
        task={"kind": "generation", "generation": LIMITS},
        preprocess={"kind": "none"},
        batching={"max_batch_size": 4},
        serving={},
    )
    plan.save(tmp_path)
    context = Context(tmp_path)
    service = SpecHandler()
    service.initialize(context)
    return service, context


def step(service, context, requests: dict) -> list:
    """One handle() call with these {request id: body (None once cached in the backend)}."""
    context.request_ids = dict(enumerate(requests))
    bodies = service.handle([{"body": b} for b in requests.values()], context)
    return list(zip(bodies, [stop(None) for stop in context.stopping_criteria]))
