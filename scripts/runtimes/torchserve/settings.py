"""The spec's batching, workers and timeouts in TorchServe's terms (model-config.yaml): the one
place they are translated. TorchServe's maxBatchDelay is whole milliseconds, so a fractional
queue delay is rounded up with a warning, never silently changed."""

from __future__ import annotations

import math
from typing import Any, TypedDict

from handlers.plan import ServingPlan
from scripts.runtimes.protocols import Translation

NAME = "torchserve"  # RUNTIME=torchserve; the spec's per_runtime key; its run state's folder


class EngineSettings(TypedDict):
    settings: dict[str, Any]  # model-config.yaml keys the engine needs
    waiting_slots: int  # batchSize room for each of batching.max_waiting requests


# The serving task's engine (handlers/tasks.py) in TorchServe's terms. "generate": one handle()
# call per decode step, unfinished requests re-queued (continuousBatching). TorchServe hands
# the handler up to batchSize requests, decoding or new: room for max_waiting that wait in the
# handler, and as many again that it refuses at once (429).
ENGINE_SETTINGS: dict[str, EngineSettings] = {
    "forward": {"settings": {}, "waiting_slots": 0},
    "generate": {"settings": {"continuousBatching": True}, "waiting_slots": 2},
}


def model_config_yaml(plan: ServingPlan) -> Translation:
    batching, serving = plan.batching, plan.serving
    delay = batching.max_queue_delay_ms
    # TorchServe reads maxBatchDelay 0 as "unset" and waits its default 100 ms for every batch
    delay_ms = max(math.ceil(delay), 1)
    warnings: list[str] = []
    if delay_ms != delay:
        warnings.append(
            f"{plan.name}: TorchServe's maxBatchDelay is whole milliseconds, at least 1 (0 "
            f"means its default, 100 ms): batching.max_queue_delay_ms {delay:g} is served as "
            f"{delay_ms} ms"
        )
    if batching.preferred_batch_sizes:
        warnings.append(
            f"{plan.name}: TorchServe has no preferred batch sizes: "
            f"batching.preferred_batch_sizes {batching.preferred_batch_sizes} "
            "applies to Triton only"
        )
    engine = ENGINE_SETTINGS[plan.task.serving.engine]
    gathered = max(batching.max_batch_size, 1) if batching.dynamic else 1
    batch_size = gathered + engine["waiting_slots"] * batching.max_waiting
    return Translation(
        {
            **engine["settings"],
            "minWorkers": serving.workers.min,
            "maxWorkers": serving.workers.max,
            "batchSize": batch_size,
            # TorchServe's own queue in front of the handler: full, it answers 503 at once
            "jobQueueSize": batching.max_waiting,
            "maxBatchDelay": delay_ms,
            "responseTimeout": serving.response_timeout_s,
            "startupTimeout": serving.startup_timeout_s,
        },
        warnings,
    )
