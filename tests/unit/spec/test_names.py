"""Names and identifiers are matched whole: a trailing newline (which `re.match` with `$` lets
through) or any other trailing text is refused, in the spec's own checks and in pydantic's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typing import Annotated

from pydantic import BaseModel, TypeAdapter, ValidationError

from scripts.spec import SpecError, load_spec
from scripts.spec.cluster import KServeSpec
from scripts.spec.sections import Source, Training
from handlers.preprocessing.tensors import TensorSpec
from tests.conftest import TINY_ENTRY, write_spec

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ['"tiny\\n"', '"tiny\\nother"', '"tiny "'])
def test_a_model_name_with_trailing_text_is_refused(tmp_path, name):
    spec = write_spec(tmp_path, TINY_ENTRY.format(name=name, formats="torchscript"))
    with pytest.raises(SpecError, match="is not a valid model name"):
        load_spec(spec)


@pytest.mark.parametrize(
    "model, field, value",
    [
        (Source, "module", "models.tabular:TabularMLP\n"),
        (Training, "script", "models.zoo:write\n"),
        (KServeSpec, "service", "torchship\n"),
        (KServeSpec, "namespace", "serving\n"),
        (KServeSpec, "cpu", "1\n"),
        (TensorSpec, "name", "features\n"),
    ],
)
def test_pydantic_patterns_refuse_a_trailing_newline(model: type[BaseModel], field, value):
    """Pydantic's (Rust) regex `$` is the end of the text; pinned here so a switch to Python's
    engine cannot let a newline through unnoticed."""
    checked = TypeAdapter(Annotated[str, *model.model_fields[field].metadata])
    assert checked.validate_python(value.rstrip("\n")) == value.rstrip("\n")
    with pytest.raises(ValidationError, match="pattern"):
        checked.validate_python(value)


def test_no_identifier_is_checked_with_re_match_and_a_dollar():
    """`re.match(r"...$", s)` accepts s + "\\n": names are checked with re.fullmatch instead."""
    anchored = re.compile(r"re\.match\(\s*(r?[\"'][^\"']*\$|[A-Z_]*PATTERN)")
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for folder in ("scripts", "handlers")
        for path in sorted((REPO / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if anchored.search(line)
    ]
    assert not offenders, f"use re.fullmatch: {offenders}"
