"""Alert rules from the spec, per model and runtime (a runtime is a scrape job), in Prometheus'
rule-file format. The thresholds are the model's `monitoring` section; the series are our
catalogue's (handlers/metrics.py), so one expression holds for TorchServe and Triton alike.

- ModelNotLoaded: the model's loads counter is absent: it never loaded, or its server is not
  scraped (down, or the port is wrong).
- ModelRestarted: a TorchServe worker or a Triton stub loaded the model again (a worker died and
  was restarted; Triton's watchdog reloaded a dead stub).
- ModelErrors: 5xx (our bugs) per request above max_error_ratio.
- ModelRejectsSpike: 4xx (clients' mistakes) per second above max_rejected_per_s.
- ModelSlow: p99 of the model's executed batches above model_p99_ms.
- GenerationSlowFirstToken (generation models): p99 time to first token above ttft_p99_ms.
- GenerationQueueGrowing (generation models): more than half of batching.max_waiting requests
  wait for a place in the batch, for 2 minutes; beyond max_waiting they are refused (429).
- ServerDown: a scrape target does not answer.
"""

from __future__ import annotations

from handlers.metrics import (
    FAILED,
    LOADS,
    REJECTED,
    REQUESTS,
    REQUESTS_WAITING,
    STAGE_BUCKET,
    TIME_TO_FIRST_TOKEN,
)
from scripts.spec import ModelSpec
from scripts.tasks import task_of

WINDOW = "5m"
RESTART_WINDOW = "10m"


def selector(model: str, job: str, **more: str) -> str:
    labels = {"job": job, "model": model, **more}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def alert(name: str, expr: str, summary: str, severity: str, for_: str = "0m", **labels) -> dict:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary},
    }


def model_alerts(spec: ModelSpec, job: str) -> list[dict]:
    m, name = spec.monitoring, spec.name
    by = "sum by (job, model, version)"
    where = selector(name, job)
    return [
        alert(
            "ModelNotLoaded",
            f"absent({LOADS.name}{where})",
            f"{name} is not loaded on {job} (failed to load, or the server is not scraped)",
            "critical",
            "1m",
            job=job,
            model=name,
        ),
        alert(
            "ModelRestarted",
            f"increase({LOADS.name}{where}[{RESTART_WINDOW}]) > 0",
            f"{name} was loaded again on {job}: a worker or stub died and was restarted "
            "(TorchServe) or reloaded by the watchdog (Triton)",
            "warning",
        ),
        alert(
            "ModelErrors",
            f"{by} (rate({FAILED.name}{where}[{WINDOW}])) / "
            f"{by} (rate({REQUESTS.name}{where}[{WINDOW}])) > {m.max_error_ratio:g}",
            f"{name} on {job}: more than {m.max_error_ratio:.1%} of requests fail with 5xx",
            "critical",
        ),
        alert(
            "ModelRejectsSpike",
            f"{by} (rate({REJECTED.name}{where}[{WINDOW}])) > {m.max_rejected_per_s:g}",
            f"{name} on {job}: more than {m.max_rejected_per_s:g} requests/s refused with 4xx",
            "warning",
        ),
        alert(
            "ModelSlow",
            f"histogram_quantile(0.99, sum by (job, model, version, le) "
            f"(rate({STAGE_BUCKET.name}{selector(name, job, stage='model')}[{WINDOW}]))) "
            f"> {m.model_p99_ms / 1000:g}",
            f"{name} on {job}: p99 of an executed batch above {m.model_p99_ms:g} ms",
            "warning",
            "5m",
        ),
        *(generation_alerts(spec, job) if task_of(spec).streams_tokens else []),
    ]


def generation_alerts(spec: ModelSpec, job: str) -> list[dict]:
    """A generation model's: its time to first token's p99 (queueing shows there first), and
    its waiting requests nearing the point where they are refused."""
    m, name = spec.monitoring, spec.name
    half = spec.batching.max_waiting / 2
    return [
        alert(
            "GenerationSlowFirstToken",
            f"histogram_quantile(0.99, sum by (job, model, version, le) "
            f"(rate({TIME_TO_FIRST_TOKEN.bucket.name}{selector(name, job)}[{WINDOW}]))) "
            f"> {m.ttft_p99_ms / 1000:g}",
            f"{name} on {job}: p99 time to first token above {m.ttft_p99_ms:g} ms "
            "(requests wait: more than the batch holds, or long prompts)",
            "warning",
            "5m",
        ),
        alert(
            "GenerationQueueGrowing",
            f"max by (job, model, version) ({REQUESTS_WAITING.name}{selector(name, job)}) "
            f"> {half:g}",
            f"{name} on {job}: more than {half:g} requests wait for a place in the batch "
            f"(half of batching.max_waiting {spec.batching.max_waiting}; beyond it they get 429)",
            "warning",
            "2m",
        ),
    ]


def alert_rules(models: list[ModelSpec], jobs: list[str]) -> dict:
    """One group per model (its alerts on every runtime), and the servers' own."""
    groups = [
        {
            "name": "servers",
            "rules": [
                alert(
                    "ServerDown",
                    "up == 0",
                    "{{ $labels.job }} does not answer on {{ $labels.instance }}",
                    "critical",
                    "1m",
                )
            ],
        }
    ]
    for spec in models:
        groups.append(
            {"name": spec.name, "rules": [a for job in jobs for a in model_alerts(spec, job)]}
        )
    return {"groups": groups}
