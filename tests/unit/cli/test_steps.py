"""The build's progress and table of steps (scripts/cli/common.py StepLog) from a recorded
sequence of step events, as ensure_built's `say` reports them: no real build."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from types import SimpleNamespace

from handlers.tasks import Raw

import pytest
from rich.console import Console

from scripts.cli.common import StepLog
from scripts.pipeline.ensure import Built
from tests.conftest import REPO

FORMATS = ["onnx", "torchscript", "onnx_int8"]
MODELS = [
    SimpleNamespace(
        name=n, export=SimpleNamespace(wanted=FORMATS), task=SimpleNamespace(serving=Raw())
    )
    for n in ("a", "b", "c")
]
RUNTIMES = [
    SimpleNamespace(name="torchserve", title="TorchServe"),
    SimpleNamespace(name="triton", title="Triton"),
]
LONG = "RuntimeError: " + "x" * 100

# (seconds since the last event, stage, model, detail): a trains and exports, b fails its export
# after training, c is up to date until Triton cannot package it
EVENTS = [
    (0.0, "train", "a", ""),
    (120.4, "export", "a", ""),
    (0.2, "export", "a", "onnx"),
    (1.0, "export", "a", "torchscript"),
    (1.0, "export", "a", "onnx_int8"),
    (0.8, "train", "b", ""),
    (2.0, "export", "b", ""),
    (0.5, "export", "c", ""),
    (0.1, "package", "a", "TorchServe"),
    (4.0, "package", "c", "TorchServe"),
    (0.2, "package", "a", "Triton"),
    (1.5, "package", "c", "Triton"),
]


def built() -> Built:
    row = lambda model, status: SimpleNamespace(model=model, status=status)  # noqa: E731
    return Built(
        trained=[SimpleNamespace(name="a", skipped=False)],
        exported=[
            SimpleNamespace(name="a", skipped=False),
            SimpleNamespace(name="c", skipped=True),
        ],
        packaged={
            "torchserve": [row("a", "archived"), row("c", "up to date")],
            "triton": [row("a", "written (python)")],
        },
        failed={
            "b": "b: source.checkpoint weights/b.pt does not fit [shape]",
            "c": f"Triton: c: {LONG}",
        },
    )


def replay(out: Console, result: Built | None = built(), end: float = 0.3) -> StepLog:
    now = [0.0]
    steps = StepLog(MODELS, RUNTIMES, out=out, clock=lambda: now[0])
    with steps:
        for seconds, *event in EVENTS:
            now[0] += seconds
            steps.at(*event)
        now[0] += end
        if result is not None:
            steps.record(result)
    return steps


def plain() -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    return Console(file=text, width=100), text


def test_one_row_per_model_and_step_with_its_time_and_outcome_then_the_total():
    steps = replay(plain()[0])
    assert (
        steps.rows()
        == [
            ("a", "train", "2m 00s", "built"),
            ("a", "export", "3.0s", "built"),
            ("b", "train", "2.0s", "done"),  # trained, then its export failed: no result kept
            ("b", "export", "0.5s", "failed: source.checkpoint weights/b.pt does not fit [shape]"),
            ("c", "export", "0.1s", "up to date"),
            ("a", "package TorchServe", "4.0s", "built"),
            ("c", "package TorchServe", "0.2s", "up to date"),
            ("a", "package Triton", "1.5s", "built"),
            ("c", "package Triton", "0.3s", f"failed: {LONG[:57]}..."),
            ("total", "", "2m 12s", "4 built, 1 done, 2 failed, 2 up to date"),
        ]
    )


def test_a_build_that_raised_still_shows_how_far_it_got():
    console, text = plain()
    with pytest.raises(KeyboardInterrupt):
        with StepLog(MODELS, RUNTIMES, out=console) as steps:
            steps.at("train", "a", "")
            steps.at("export", "a", "")
            raise KeyboardInterrupt
    assert [row[3] for row in steps.rows()[:2]] == ["done", "stopped"]
    assert "build steps" in text.getvalue()


def test_off_a_terminal_each_step_and_format_is_a_plain_line_and_no_escape_sequence():
    console, text = plain()
    assert not console.is_terminal
    replay(console)
    out = text.getvalue()
    assert "\x1b" not in out and "\r" not in out
    for line in (
        "train a ...",
        "export a: onnx (1/3)",
        "export a: onnx_int8 (3/3)",
        "package TorchServe c ...",
    ):
        assert line in out.splitlines()
    # the table: the bracketed reason printed as it is (not parsed as markup), and the total
    assert "[shape]" in out
    assert "4 built, 1 done, 2 failed, 2 up to date" in out


def test_on_a_terminal_the_formats_are_a_bar_not_lines():
    text = io.StringIO()
    replay(Console(file=text, width=100, force_terminal=True))
    out = text.getvalue()
    assert "train a ..." in out and "build steps" in out
    assert "export a: onnx (1/3)" not in out


def test_ci_with_stdout_in_a_file_gets_no_escape_sequences(tmp_path):
    """The module's console as `make archive` in CI uses it: CI=true, stdout redirected."""
    log = tmp_path / "build.log"
    script = (
        "from tests.unit.cli.test_steps import replay; from scripts.cli.common import console; "
        "replay(console)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env={**env, "CI": "true"},
            stdout=out,
            check=True,
        )
    text = log.read_text()
    assert "export a: torchscript (2/3)" in text and "build steps" in text
    assert "\x1b" not in text and "\r" not in text
