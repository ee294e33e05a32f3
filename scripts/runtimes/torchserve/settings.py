"""The spec's batching, workers and timeouts in TorchServe's terms (model-config.yaml): the one
place they are translated. TorchServe's maxBatchDelay is whole milliseconds, so a fractional
queue delay is rounded up with a warning, never silently changed."""

from __future__ import annotations

import math

from handlers.plan import ServingPlan
from scripts.runtimes.protocols import Translation

NAME = "torchserve"  # RUNTIME=torchserve; the spec's per_runtime key; its run state's folder


def model_config_yaml(plan: ServingPlan) -> Translation:
    batching, serving = plan.batching, plan.serving
    delay = batching.max_queue_delay_ms
    delay_ms = math.ceil(delay)
    warnings = []
    if delay_ms != delay:
        warnings.append(
            f"{plan.name}: TorchServe's maxBatchDelay is whole milliseconds: "
            f"batching.max_queue_delay_ms {delay:g} is served as {delay_ms} ms"
        )
    if batching.preferred_batch_sizes:
        warnings.append(
            f"{plan.name}: TorchServe has no preferred batch sizes: "
            f"batching.preferred_batch_sizes {batching.preferred_batch_sizes} "
            "applies to Triton only"
        )
    batch_size = max(batching.max_batch_size, 1)
    # a generation model: one handle() call per decode step, unfinished requests re-queued.
    # TorchServe hands the handler up to batchSize requests, decoding or new: room for
    # max_waiting that wait in the handler, and as many again that it refuses at once (429).
    continuous = {}
    if plan.task.generation is not None:
        continuous = {"continuousBatching": True}
        batch_size += 2 * batching.max_waiting
    return Translation(
        {
            **continuous,
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
