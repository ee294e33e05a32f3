"""review_gpt's training on a slice of the shipped sentences (the full run is `make train`'s):
a Hugging Face folder that transformers and tokenizers load back, held-out perplexity, and the
decode loop on it giving generate()'s tokens and the tokenizer's text."""

from __future__ import annotations

import json

import pytest
import torch

from handlers.engines.generation import DecodeLoop, Sampling
from models.review_gpt import END, train
from models.sentiment import DATA_DIR


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    data = tmp_path_factory.mktemp("sentences")
    lines = []
    for name in ("amazon.tsv", "yelp.tsv"):
        lines += (DATA_DIR / name).read_text(encoding="utf-8").splitlines()[:300]
    (data / "reviews.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sentences):
    out = tmp_path_factory.mktemp("review_gpt")
    return out, train(out, data_dir=sentences, epochs=1)


def test_training_writes_a_hugging_face_folder_and_its_perplexity(trained):
    out, metrics = trained
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert 1 < metrics["held_out_perplexity"] < 2048 and metrics["parameters"] > 100_000


def test_the_decode_loop_on_it_gives_generate_tokens_and_the_tokenizers_text(trained):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    out, _ = trained
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    end = tokenizer.token_to_id(END)
    prompts = [tokenizer.encode(p).ids for p in ("The battery", "This film was", "Great")]
    loop = DecodeLoop(model, tokenizer.decode, end)
    sequences = [loop.join(i, p, Sampling(max_tokens=12)) for i, p in enumerate(prompts)]
    streamed = {i: "" for i in range(len(prompts))}
    while loop.busy:
        for event in loop.step():
            streamed[event.sequence.key] += event.text
    for i, (prompt, sequence) in enumerate(zip(prompts, sequences)):
        expected = model.generate(
            torch.tensor([prompt]), max_new_tokens=12, do_sample=False, pad_token_id=end
        )[0, len(prompt) :].tolist()
        assert sequence.tokens == expected, f"prompt {i}"
        made = [t for t in sequence.tokens if t != end]
        assert streamed[i] == tokenizer.decode(made) == sequence.text


def test_version_2_is_version_1_fine_tuned_into_its_own_folder_with_the_same_tokenizer(
    trained, sentences
):
    from safetensors.torch import load_file

    from models.review_gpt_finetune import finetune

    out, _ = trained
    metrics = finetune(out, out / "v2", data_dir=sentences)
    assert (out / "v2" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    first, second = (load_file(f / "model.safetensors") for f in (out, out / "v2"))
    assert first.keys() == second.keys()
    assert any(not torch.equal(first[k], second[k]) for k in first)  # trained, not copied
    assert json.loads((out / "v2" / "metrics.json").read_text()) == metrics
    assert 1 < metrics["held_out_perplexity"] < 2048


def test_fine_tuning_without_version_1_names_what_to_build_first(tmp_path):
    from models.review_gpt_finetune import write

    with pytest.raises(FileNotFoundError, match=r"build version 1 first"):
        write(tmp_path / "v2")
