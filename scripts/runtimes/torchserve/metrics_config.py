"""TorchServe's metrics_config: its own default metrics plus our catalogue (handlers/metrics.py).

The frontend publishes a backend metric only when this file declares it (name, type and
dimensions; it adds a Hostname label itself). `make serve` writes it beside the rendered
config.properties and points `metrics_config` at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from handlers.metrics import METRICS
from handlers.adapters.torchserve_metrics import unit


def default_metrics() -> dict[str, Any]:
    """TorchServe's own metrics.yaml (frontend and default backend metrics), kept as they are."""
    import ts

    return yaml.safe_load((Path(ts.__file__).parent / "configs" / "metrics.yaml").read_text())


def metrics_config() -> dict[str, Any]:
    config = default_metrics()
    model_metrics = config.setdefault("model_metrics", {})
    for metric in METRICS:
        dimensions = list(metric.label_names)
        declared = model_metrics.setdefault(metric.kind, [])
        declared.append({"name": metric.name, "unit": unit(metric), "dimensions": dimensions})
    return config


def write_metrics_config(path: Path) -> Path:
    path.write_text(yaml.safe_dump(metrics_config(), sort_keys=False))
    return path
