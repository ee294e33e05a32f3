"""The command line: help for every step, and user mistakes as one line with no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("step", ["train", "export", "check"])
def test_every_step_has_help_with_spec_and_model(step):
    result = run_cli(step, "--help")
    assert result.returncode == 0
    assert "--spec" in result.stdout
    if step != "check":
        assert "--model" in result.stdout


def test_bad_spec_exits_2_with_one_line_per_problem(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  - name: x\n    unknown_key: 1\n")
    result = run_cli("export", "--spec", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any("unknown_key: unknown field" in line for line in lines)
    assert any("source: required field is missing" in line for line in lines)


def test_unknown_model_and_missing_spec(tmp_path):
    result = run_cli("train", "--model", "nope")
    assert result.returncode == 2 and "unknown model 'nope'" in result.stderr
    result = run_cli("check", "--spec", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "spec file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_clean_empties_a_hugging_face_folder_trained_here_and_its_versions(tmp_path):
    """`make clean` on a spec whose language model is trained into a folder (no checkpoint
    file): it used to raise TypeError on the missing checkpoint."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "data").symlink_to(REPO / "models" / "data")
    made = tmp_path / "checkpoints" / "gpt"
    (made / "v2").mkdir(parents=True)
    for path in (made / "model.safetensors", made / "v2" / "model.safetensors"):
        path.write_bytes(b"weights")
    (tmp_path / "models.yaml").write_text(
        """models:
  - name: gpt
    version: 1
    source: {pretrained: checkpoints/gpt}
    training: {script: "models.review_gpt:write", data_files: [models/data/sentiment]}
    task: {kind: generation, generation: {max_tokens: 8}}
    versions:
      - version: 2
        training: {script: "models.review_gpt_finetune:write",
                   data_files: [models/data/sentiment, checkpoints/gpt/model.safetensors]}
"""
    )
    result = run_cli("clean", "--spec", str(tmp_path / "models.yaml"))
    assert result.returncode == 0, result.stderr
    assert not any(made.iterdir())
