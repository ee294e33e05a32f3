"""The spec's batching and instances in Triton's terms (config.pbtxt's dynamic_batching and
instance_group): the one place they are translated. The queue delay is whole microseconds;
batching.max_waiting bounds the scheduler's queue (a generation model has no Triton queue: its
decode loop bounds its own, handlers/engines/generating.py)."""

from __future__ import annotations

from typing import Any

from handlers.plan import ServingPlan
from scripts.runtimes.protocols import Translation

NAME = "triton"  # RUNTIME=triton; the spec's per_runtime key; its run state's folder


def scheduling(plan: ServingPlan) -> Translation:
    batching = plan.batching
    delay_us = round(batching.max_queue_delay_ms * 1000)
    warnings: list[str] = []
    if abs(delay_us - batching.max_queue_delay_ms * 1000) > 1e-6:
        warnings.append(
            f"{plan.name}: Triton's max_queue_delay_microseconds is whole microseconds: "
            f"batching.max_queue_delay_ms {batching.max_queue_delay_ms:g} "
            f"is served as {delay_us} us"
        )
    preferred = [b for b in batching.preferred_batch_sizes if b <= batching.max_batch_size]
    dropped = sorted(set(batching.preferred_batch_sizes) - set(preferred))
    if dropped:
        warnings.append(
            f"{plan.name}: preferred batch sizes {dropped} exceed max_batch_size "
            f"{batching.max_batch_size}; Triton gets {preferred}"
        )
    settings: dict[str, Any] = {
        "max_batch_size": batching.max_batch_size,
        "instances": plan.serving.instances,
    }
    if batching.max_batch_size > 0 and batching.dynamic:
        # No default_queue_policy.max_queue_size (batching.max_waiting): with one, Triton 2.51's
        # dynamic batcher leaves ~2% of requests waiting out its 500 ms idle wait at one client
        # (digits_cnn over gRPC: 67 instead of 1,700 answers/s; docs/performance.md).
        settings.update(max_queue_delay_microseconds=delay_us, preferred_batch_size=preferred)
    return Translation(settings, warnings)
