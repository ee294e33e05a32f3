"""The engine of a one-pass model (handlers/engines/base.py): every admitted request is answered
at the next step, all of them in one batch through the serving core, each answer final."""

from __future__ import annotations

from typing import Hashable

from handlers.engines.serving_core import Answer, Request, ServingCore


class Forward:
    def __init__(self, core: ServingCore):
        self.core = core
        self.admitted: dict[Hashable, Request] = {}

    def admit(self, key: Hashable, request: Request) -> None:
        self.admitted[key] = request  # read and checked in the step, with its batch

    def step(self) -> dict[Hashable, Answer]:
        keys, requests = list(self.admitted), list(self.admitted.values())
        self.admitted.clear()
        return dict(zip(keys, self.core.answer(requests)))

    def cancel(self, key: Hashable) -> None:
        self.admitted.pop(key, None)

    @property
    def busy(self) -> bool:
        return bool(self.admitted)
