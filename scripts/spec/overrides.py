"""`per_runtime:` in a model's spec entry: batching and serving settings that differ by runtime.

TorchServe and Triton batch differently (measured by `make tune` on digits_cnn: with
maxBatchDelay 0 TorchServe answered one client in 108 ms p50, while Triton with no queue delay
batches whatever waits and answers one client fastest), so the best settings are not always
the same for both.
`make tune` writes these when its per-runtime choices differ.
"""

from __future__ import annotations

from pydantic import Field

from handlers.plan import Format, StrictModel
from scripts.runtimes.names import RuntimeName  # noqa: F401  (re-exported for the schema)


class RuntimeSettings(StrictModel):
    max_batch_size: int | None = Field(default=None, ge=1)
    max_queue_delay_ms: float | None = Field(default=None, ge=0)
    dynamic: bool | None = None
    threads: int | None = Field(default=None, ge=1)
    format: Format | None = None  # pyright: ignore[reportInvalidTypeForm]  Format: Literal[FORMAT_NAMES] (handlers/plan.py)

    def batching_update(self) -> dict:
        return {
            k: v
            for k, v in (
                ("max_batch_size", self.max_batch_size),
                ("max_queue_delay_ms", self.max_queue_delay_ms),
                ("dynamic", self.dynamic),
            )
            if v is not None
        }

    def serving_update(self) -> dict:
        return {
            k: v for k, v in (("threads", self.threads), ("format", self.format)) if v is not None
        }


def override_problems(
    per_runtime: dict[str, RuntimeSettings], max_batch_size: int, wanted: list[str]
) -> list[str]:
    problems = []
    for runtime, settings in per_runtime.items():
        if settings.max_batch_size is not None and max_batch_size == 0:
            problems.append(
                f"per_runtime.{runtime}.max_batch_size: the model is never batched "
                "(batching.max_batch_size 0) on any runtime; remove it"
            )
        if settings.format is not None and settings.format not in wanted:
            problems.append(
                f"per_runtime.{runtime}.format: {settings.format!r} "
                f"is not in export.formats {wanted}"
            )
    return problems
