"""`make bench`'s Triton deployments: this project's tensor models exactly as `make triton-repo`
wrote them (copied from the layout's repository: nothing of ours is built here), beside the
stock setup a user writes first (a Python-backend model that runs each request on its own with
onnxruntime, no dynamic batching), and perf_analyzer's request data (golden samples, never
random values that fall outside the spec's ranges)."""

from __future__ import annotations

import base64
import json
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from handlers.formats import FORMATS
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import exported_formats, golden
from scripts.measure.bench.deployments import DeploymentTargets, LoadTarget, stock_setup_key
from scripts.pipeline.plan import serving_plan
from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton.configs import model_config, read_config, write_config
from scripts.runtimes.triton.model_config import ModelConfig, mc
from scripts.runtimes.triton.settings import NAME
from scripts.runtimes.triton.signature import checked_signature
from scripts.spec import BuildError, ModelSpec

STOCK = stock_setup_key(NAME)  # the stock setup's key in the bench report
STOCK_MODEL_PY = Path(__file__).with_name("stock_files") / "model.py"


def stock_name(spec: ModelSpec) -> str:
    return f"{spec.name}_per_request"


def stock_config(spec: ModelSpec, layout: Layout) -> ModelConfig:
    """The per-request config: the spec's tensors and max batch size (clients send [1, ...]),
    one CPU instance, and no dynamic_batching: Triton hands execute() one request at a time."""
    config = model_config(
        serving_plan(spec, layout, "onnx"), "python", checked_signature(spec, layout)
    )
    config.name = stock_name(spec)
    config.ClearField("dynamic_batching")
    config.ClearField("parameters")
    config.ClearField("instance_group")
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    return config


def write_stock_model(spec: ModelSpec, layout: Layout, repo: Path) -> str:
    if "onnx" not in exported_formats(spec, layout):
        raise BuildError(
            f"{spec.name}: the per-request Triton setup runs the ONNX export; "
            "add onnx to export.formats"
        )
    config = stock_config(spec, layout)
    folder = repo / config.name
    shutil.rmtree(folder, ignore_errors=True)
    version = folder / str(spec.version)
    version.mkdir(parents=True)
    shutil.copy2(STOCK_MODEL_PY, version / "model.py")
    shutil.copy2(layout.artifact_dir(spec) / FORMATS["onnx"].file, version / "model.onnx")
    write_config(config, folder)
    return config.name


def copy_model(folder: Path, out: Path, version: str) -> None:
    """A built model's folder with only `version` (rollouts add others), its config serving
    that version (the built config serves the spec's first version)."""

    def others(where: str, found: list[str]) -> list[str]:
        return [n for n in found if where == str(folder) and n.isdigit() and n != version]

    shutil.copytree(folder, out, ignore=others)
    config = read_config(out / "config.pbtxt")
    if list(config.version_policy.specific.versions) != [int(version)]:
        del config.version_policy.specific.versions[:]
        config.version_policy.specific.versions.append(int(version))
        write_config(config, out)


def repository(specs: list[ModelSpec], layout: Layout, repo: Path) -> dict[tuple[str, str], str]:
    """Both setups in one scratch repository; {(model, setup): served name}."""
    built = [layout.triton_repo / s.name for s in specs]
    missing = [d for d in built if not (d / "config.pbtxt").exists()]
    if missing:
        raise BuildError(
            [f"{layout.shown(d)} not built; run `make triton-repo` first" for d in missing]
        )
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    names: dict[tuple[str, str], str] = {}
    for spec, folder in zip(specs, built):
        copy_model(folder, repo / spec.name, str(spec.version))  # what `make triton-repo` wrote
        names[(spec.name, NAME)] = spec.name
        names[(spec.name, STOCK)] = write_stock_model(spec, layout, repo)
    return names


def input_data(rows: Mapping[str, npt.NDArray[Any] | list[str]]) -> dict[str, Any]:
    """perf_analyzer's --input-data JSON: one entry per example (rows without the batch axis).
    Numeric rows as flattened content + shape; strings as themselves."""
    names = list(rows)
    count = len(rows[names[0]])
    data: list[dict[str, Any]] = []
    for i in range(count):
        entry: dict[str, Any] = {}
        for name in names:
            value = rows[name][i]
            if isinstance(
                value, bytes
            ):  # binary (encoded images): base64 of the serialized element
                entry[name] = {
                    "b64": base64.b64encode(struct.pack("<I", len(value)) + value).decode(),
                    "shape": [1],
                }
            elif isinstance(value, str):
                entry[name] = [value]
            else:
                value = np.asarray(value)
                # a per-sample scalar travels as [1] (config.pbtxt: dims [1], empty reshape)
                entry[name] = {
                    "content": value.reshape(-1).tolist(),
                    "shape": list(value.shape) or [1],
                }
        data.append(entry)
    return {"data": data}


def write_input_data(rows: Mapping[str, npt.NDArray[Any] | list[str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(input_data(rows)))
    return path


def load_targets(
    specs: list[ModelSpec],
    layout: Layout,
    server: tr.Triton,
    names: dict[tuple[str, str], str],
    workdir: Path,
    setups: tuple[str, ...] = (STOCK, NAME),
    protocols: tuple[str, ...] = ("http", "grpc"),
) -> DeploymentTargets:
    urls = {"http": server.http_url, "grpc": server.grpc_url}
    # perf_analyzer reads the statistics API: the admin key goes with its HTTP requests (a
    # bench server leaves statistics open for gRPC, where perf_analyzer sends no header)
    admin = ((tr.ADMIN_HEADER, server.admin_key),) if server.admin_key else ()
    targets: DeploymentTargets = []
    for spec in specs:
        data = write_input_data(golden(spec, layout), workdir / "data" / f"{spec.name}.input.json")
        for setup in setups:
            for protocol, url in ((p, urls[p]) for p in protocols):
                targets.append(
                    (
                        spec.name,
                        setup,
                        protocol,
                        LoadTarget(
                            names[(spec.name, setup)],
                            url,
                            protocol,
                            "triton",
                            data,
                            headers=admin if protocol == "http" else (),
                        ),
                    )
                )
    return targets
