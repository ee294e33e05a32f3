"""A generation model's streamed answer read as a client reads it, whichever runtime sent it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any


def joined_pieces(pieces: Iterable[dict[str, Any]], started: float | None = None) -> dict[str, Any]:
    """A streamed answer read as a client reads it: its pieces joined, how many there were and,
    from `started` (perf_counter when the request was sent), the seconds to the first and the
    last piece (an error piece, as Triton streams send one, ends it)."""
    answer: dict[str, Any] = {
        "text": "",
        "token_ids": [],
        "finish_reason": None,
        "pieces": 0,
        "status": 200,
    }
    for piece in pieces:
        if started is not None:
            answer["last_piece_s"] = time.perf_counter() - started
            answer.setdefault("first_piece_s", answer["last_piece_s"])
        if "error" in piece:
            return {**answer, "status": 400, "error": piece["error"]}
        answer["text"] += piece["text"]
        answer["token_ids"] += piece["token_ids"]
        answer["finish_reason"] = piece["finish_reason"]
        answer["pieces"] += 1
    return answer
