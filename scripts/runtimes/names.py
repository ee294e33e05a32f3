"""The registered runtimes' names, with no imports: the spec (`per_runtime:`, `RUNTIME=`) needs
them before any runtime code loads. scripts/runtimes/registry.py checks they match its plugins."""

from __future__ import annotations

from typing import Literal, get_args

RuntimeName = Literal["torchserve", "triton"]
RUNTIME_NAMES: tuple[RuntimeName, ...] = get_args(RuntimeName)
