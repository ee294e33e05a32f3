"""`python -m scripts <step>`: the command line behind the Makefile's targets. Each module
registers its commands on the one typer app (scripts/cli/common.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from scripts.cli import build, deploy, measure, rollout, serve  # noqa: F401  (registers the commands)
from scripts.cli.common import app


def main() -> None:
    app(prog_name=f"{Path(sys.executable).name} -m scripts")
