r"""TorchServe's KServe bundle: the storage tree KServe's TorchServe runtime starts as

    torchserve --start --model-store=/mnt/models/model-store \
        --ts-config=/mnt/models/config/config.properties

with `config/config.properties` and `model-store/*.mar`. The settings are `make serve`'s hardened
ones, changed only where running inside KServe's pod needs it:

- KServe's wrapper (started next to TorchServe in the pytorch/torchserve-kfs image) takes port
  8080 and forwards v1 / v2 / gRPC-v2 requests to the inference address, which therefore moves to
  8085; every TorchServe API stays on the pod's loopback, so only the wrapper reaches it.
- Token authorization is off: the wrapper calls TorchServe without TorchServe's token (its
  readiness probe too). The APIs are loopback-only; access to the service is KServe's (and the
  mesh's) to control.
- Metrics listen on all interfaces (port 8082) for the cluster's Prometheus to scrape.
- `model_snapshot` lists the models: the wrapper reads their names from it, TorchServe their
  workers and batching (the same translation as the archives' model-config.yaml).
- No envelope, and `enable_envvars_config=false`: the TS_SERVICE_ENVELOPE that KServe's runtime
  sets is ignored, so KServe's v1 / v2 bodies reach our handler as sent and it answers each in
  its own protocol (handlers/protocols/kserve.py). Nothing in the pod's environment can loosen
  the hardened settings either.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from scripts.pipeline.layout import Layout
from scripts.pipeline.plan import serving_plan
from scripts.kserve.storage import KServeBundle
from scripts.runtimes.torchserve import server as ts
from scripts.runtimes.torchserve.archive import mar_path
from scripts.runtimes.torchserve.metrics_config import write_metrics_config
from scripts.runtimes.torchserve.settings import NAME, model_config_yaml
from scripts.spec import BuildError, ModelSpec
from scripts.spec.cluster import KServeSpec

MOUNT = Path("/mnt/models")  # where KServe's storage initializer puts the storageUri
PORTS = ts.Ports(inference=8085)  # 8080 is the KServe wrapper's
RUNTIME_VERSION = "0.12.0"  # pytorch/torchserve-kfs tag: the TorchServe we build and test with
SNAPSHOT_KEYS = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")
# What TorchServe writes under KServe's read-only root filesystem (emptyDirs, scripts/kserve): the
# pid file, worker sockets and Java's files in /tmp; TEMP (/home/model-server/tmp in the image:
# archives are unpacked there); its logs under its working directory. No key_file.json: token
# authorization is off here, and TorchServe 0.12 writes that file only when it is on.
WRITABLE_DIRS = ("/tmp", "/home/model-server/tmp", "/home/model-server/logs")


def kserve_command(tree: Path | str = MOUNT) -> list[str]:
    """The container's command line, as KServe's kserve-torchserve ServingRuntime has it."""
    return [
        "torchserve",
        "--start",
        f"--model-store={tree}/model-store",
        f"--ts-config={tree}/config/config.properties",
    ]


def model_snapshot(specs: list[ModelSpec], layout: Layout) -> dict[str, Any]:
    models: dict[str, dict[str, dict[str, Any]]] = {}
    for spec in specs:
        settings = model_config_yaml(serving_plan(spec.for_runtime(NAME), layout)).settings
        models[spec.name] = {
            str(spec.version): {
                "defaultVersion": True,
                "marName": f"{spec.name}.mar",
                **{k: settings[k] for k in SNAPSHOT_KEYS},
            }
        }
    return {"name": "startup.cfg", "modelCount": len(models), "models": models}


HEADER = (
    "# TorchServe settings for KServe's TorchServe runtime, written by `make kserve` from the\n"
    "# project's hardened config.properties. Changed for the pod "
    "(see scripts/runtimes/torchserve/kserve.py):\n"
    "# - inference on 127.0.0.1:8085: KServe's wrapper owns 8080 and forwards to it;\n"
    "# - token authorization off: the wrapper sends no TorchServe token; "
    "every API is loopback-only;\n"
    "# - metrics on 0.0.0.0:8082 for the cluster's Prometheus, ours declared in metrics.yaml;\n"
    "# - model_snapshot names the models (the wrapper reads it) with their workers and batching;\n"
    "# - no envelope and enable_envvars_config=false: KServe's v1/v2 bodies reach the handler "
    "as sent.\n"
)


def kserve_config(template: Path, specs: list[ModelSpec], layout: Layout) -> str:
    """The template's settings (its comments dropped: some no longer hold) with the pod's
    changes."""
    snapshot = json.dumps(model_snapshot(specs, layout), separators=(",", ":"))
    rendered = ts.render_config(
        template,
        MOUNT / "model-store",
        [s.name for s in specs],
        PORTS,
        overrides={
            "metrics_address": f"http://0.0.0.0:{PORTS.metrics}",
            "metrics_config": str(MOUNT / "config" / "metrics.yaml"),
            "disable_token_authorization": "true",
            "enable_envvars_config": "false",
            "model_snapshot": snapshot,
        },
    )
    settings = [line for line in rendered.splitlines() if line.strip() and not line.startswith("#")]
    return HEADER + "\n".join(settings) + "\n"


def write_tree(
    template: Path, specs: list[ModelSpec], layout: Layout, store: Path, out: Path
) -> Path:
    """out/config/config.properties and out/model-store/*.mar (copies of the built archives)."""
    missing = [mar_path(spec, store) for spec in specs if not mar_path(spec, store).exists()]
    if missing:
        raise BuildError(
            [f"{layout.shown(path)} not built; run `make archive` first" for path in missing]
        )
    shutil.rmtree(out, ignore_errors=True)
    (out / "config").mkdir(parents=True)
    (out / "model-store").mkdir()
    for spec in specs:
        shutil.copy2(mar_path(spec, store), out / "model-store" / f"{spec.name}.mar")
    (out / "config" / "config.properties").write_text(kserve_config(template, specs, layout))
    write_metrics_config(out / "config" / "metrics.yaml")
    return out


class TorchServeKServe:
    """KServeBundler: the hardened config and copies of the built archives (built by the
    pipeline's ensure step: this never builds)."""

    def bundle(
        self, specs: list[ModelSpec], layout: Layout, out: Path, settings: KServeSpec
    ) -> KServeBundle:
        tree = write_tree(layout.torchserve_config, specs, layout, layout.model_store, out)
        names = [s.name for s in specs]
        return KServeBundle(
            NAME, tree, "pytorch", RUNTIME_VERSION, settings.protocol, names, PORTS.metrics
        )
