"""The tiny GPT-2 (tests/unit/handlers/conftest.py) as the language-model build steps take it:
untrained (`folder`) and trained a little (`trained`: a model whose perplexity means something)."""

from __future__ import annotations

import pytest

from tests.unit.handlers.conftest import train_tiny_gpt, write_tiny_gpt


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_gpt(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, folder):
    return train_tiny_gpt(folder, tmp_path_factory.mktemp("trained"))
