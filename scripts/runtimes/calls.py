"""What a served endpoint is to its callers (verification, gates, traffic, bench): a function.
A runtime's Endpoints capability hands these out, bound to one running server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from numpy.typing import NDArray

from scripts.spec import ModelSpec

# (spec, {input: rows}) -> {output: rows}: golden tensors through one served endpoint.
TensorCall = Callable[[ModelSpec, dict[str, NDArray[Any]]], dict[str, NDArray[Any]]]
# An example request file (image bytes, text) -> the served answer of that one example: a
# classifier's {"label": str, "score": float}, any other model's {output: array}.
RequestCall = Callable[[Path], dict[str, Any]]
# a generation model's endpoint: a completion request (prompt, max_tokens, ...) in; its answer
# (text, token_ids, finish_reason; pieces: how many responses it came in; or status + error)
GenerateCall = Callable[[dict[str, Any]], dict[str, Any]]
# how long a generation client waits for the next piece: queued behind 63 others on a CPU, a
# stream's first token may take minutes (bench-generation's stock setups at 64 streams)
STREAM_TIMEOUT_S = 300
