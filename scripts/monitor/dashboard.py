"""A Grafana dashboard per spec: one row per model with its request rate by format, p50/p99 of
the model's executed batches, errors (4xx by reason, 5xx by stage) and rows per executed batch,
each split by runtime (the scrape job). Checked against dashboard.schema.json (the subset of
Grafana's dashboard model it uses) before it is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from handlers.metrics import (
    BATCH_ROWS,
    BATCHES,
    FAILED,
    GENERATION_TOKENS,
    INTER_TOKEN_LATENCY,
    KV_CACHE_USAGE,
    PROMPT_TOKENS,
    REJECTED,
    REQUESTS,
    REQUESTS_RUNNING,
    REQUESTS_WAITING,
    STAGE_BUCKET,
    TIME_TO_FIRST_TOKEN,
)
from scripts.spec import ModelSpec
from scripts.tasks import task_of

SCHEMA = json.loads((Path(__file__).with_name("dashboard.schema.json")).read_text())
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DATASOURCE_VARIABLE = {"name": "datasource", "type": "datasource", "query": "prometheus"}
RATE = "1m"
PANEL_WIDTH, PANEL_HEIGHT = 6, 8
PER_ROW = 24 // PANEL_WIDTH


def target(expr: str, legend: str, ref: str) -> dict:
    return {"refId": ref, "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}


def model_panels(spec: ModelSpec) -> list[tuple[str, str, list[dict]]]:
    """(title, unit, queries) of the model's panels: four, and a generation model's two."""
    where = f'{{model="{spec.name}"}}'
    stage = f'{{model="{spec.name}", stage="model"}}'
    by = "sum by (job, version"
    quantiles = [
        target(
            f"histogram_quantile({q}, {by}, le) (rate({STAGE_BUCKET.name}{stage}[{RATE}])))",
            f"{{{{job}}}} v{{{{version}}}} p{round(q * 100)}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.99, "B"))
    ]
    return [
        (
            "requests/s by format, and by the gateway's client",
            "reqps",
            [
                target(
                    f"{by}, format) (rate({REQUESTS.name}{where}[{RATE}]))",
                    "{{job}} v{{version}} {{format}}",
                    "A",
                ),
                target(
                    f"sum by (job, client) (rate({REQUESTS.name}{where}[{RATE}]))",
                    "{{job}} client {{client}}",
                    "B",
                ),
            ],
        ),
        ("model time p50 / p99 (one executed batch)", "s", quantiles),
        (
            "errors/s: 4xx by reason, 5xx by stage",
            "reqps",
            [
                target(
                    f"{by}, reason) (rate({REJECTED.name}{where}[{RATE}]))",
                    "{{job}} 4xx {{reason}}",
                    "A",
                ),
                target(
                    f"{by}, stage) (rate({FAILED.name}{where}[{RATE}]))",
                    "{{job}} 5xx {{stage}}",
                    "B",
                ),
            ],
        ),
        (
            "rows per executed batch",
            "none",
            [
                target(
                    f"{by}) (rate({BATCH_ROWS.name}{where}[{RATE}])) / "
                    f"{by}) (rate({BATCHES.name}{where}[{RATE}]))",
                    "{{job}} v{{version}}",
                    "A",
                )
            ],
        ),
        *(generation_panels(spec) if task_of(spec).streams_tokens else []),
    ]


def generation_panels(spec: ModelSpec) -> list[tuple[str, str, list[dict]]]:
    """A generation model's latencies (vLLM's TTFT and inter-token latency), tokens/s, its
    requests running and waiting, and the KV cache it holds."""
    where = f'{{model="{spec.name}"}}'
    by = "sum by (job, version"
    latencies = [
        target(
            f"histogram_quantile({q}, {by}, le) (rate({histogram.bucket.name}{where}[{RATE}])))",
            f"{{{{job}}}} {short} p{round(q * 100)}",
            ref,
        )
        for (histogram, short), (q, ref) in zip(
            [(TIME_TO_FIRST_TOKEN, "TTFT")] * 2 + [(INTER_TOKEN_LATENCY, "ITL")] * 2,
            ((0.5, "A"), (0.99, "B"), (0.5, "C"), (0.99, "D")),
        )
    ]
    tokens = [
        target(f"{by}) (rate({counter.name}{where}[{RATE}]))", f"{{{{job}}}} {legend}", ref)
        for counter, legend, ref in (
            (GENERATION_TOKENS, "generated", "A"),
            (PROMPT_TOKENS, "prompt", "B"),
        )
    ]
    levels = [
        target(f"{by}) ({gauge.name}{where})", f"{{{{job}}}} {legend}", ref)
        for gauge, legend, ref in (
            (REQUESTS_RUNNING, "running", "A"),
            (REQUESTS_WAITING, "waiting", "B"),
        )
    ]
    usage = [target(f"max by (job, version) ({KV_CACHE_USAGE.name}{where})", "{{job}}", "A")]
    return [
        ("time to first token / inter-token latency p50 / p99", "s", latencies),
        ("tokens/s: generated, prompt", "none", tokens),
        ("requests running / waiting", "none", levels),
        ("KV cache held (of max_batch_size x context)", "percentunit", usage),
    ]


def dashboard(title: str, models: list[ModelSpec]) -> dict:
    panels: list[dict] = []
    y = 0
    for spec in models:
        panels.append(
            {
                "type": "row",
                "id": len(panels) + 1,
                "title": spec.name,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        graphs = model_panels(spec)
        for place, (name, unit, targets) in enumerate(graphs):
            row, column = divmod(place, PER_ROW)  # a generation model's two more: a second row
            panels.append(
                {
                    "type": "timeseries",
                    "id": len(panels) + 1,
                    "title": f"{spec.name}: {name}",
                    "datasource": DATASOURCE,
                    "gridPos": {
                        "h": PANEL_HEIGHT,
                        "w": PANEL_WIDTH,
                        "x": column * PANEL_WIDTH,
                        "y": y + row * PANEL_HEIGHT,
                    },
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "targets": targets,
                }
            )
        y += PANEL_HEIGHT * -(-len(graphs) // PER_ROW)
    board = {
        "title": title,
        "uid": "torchship-" + "".join(c if c.isalnum() else "-" for c in title)[:30],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "tags": ["torchship"],
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": panels,
    }
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(board)
    ]
    if problems:  # a bug of ours, never the user's
        raise AssertionError(f"generated dashboard does not match its schema: {problems}")
    return board
