"""`make bench`'s TorchServe deployments: this project's archives exactly as `make archive`
built them (copied from the layout's model store: nothing of ours is built here), beside the
stock route a user tries first (BaseHandler on the TorchScript file, batch size 1, TorchServe's
default worker count), and perf_analyzer's request data for both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numpy.typing import NDArray

from handlers.formats import FORMATS
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import exported_formats, golden
from scripts.measure.bench.deployments import DeploymentTargets, LoadTarget, stock_setup_key
from scripts.runtimes.torchserve.archive import mar_path
from scripts.runtimes.torchserve.settings import NAME
from scripts.spec import BuildError, ModelSpec

if TYPE_CHECKING:
    from scripts.runtimes.torchserve.server import TorchServe

STOCK = stock_setup_key(NAME)  # the stock setup's key in the bench report
STOCK_HANDLER = Path(__file__).with_name("stock_files") / "stock_handler.py"

ServedNames = dict[tuple[str, str], str]  # (model, setup) -> the name it is served under


def stock_name(spec: ModelSpec) -> str:
    return f"{spec.name}_stock"


def write_stock_mar(spec: ModelSpec, layout: Layout, store: Path) -> str:
    """TorchScript + the stock handler with torch-model-archiver's Python API; no
    model-config.yaml, so TorchServe's defaults apply (batch size 1, default workers)."""
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    if "torchscript" not in exported_formats(spec, layout):
        raise BuildError(
            f"{spec.name}: the stock TorchServe route loads the TorchScript export; "
            "add torchscript to export.formats"
        )
    name = stock_name(spec)
    (store / f"{name}.mar").unlink(missing_ok=True)
    generate_model_archive(
        ModelArchiverConfig(
            model_name=name,
            version=str(spec.version),
            handler=str(STOCK_HANDLER),
            serialized_file=str(layout.artifact_dir(spec) / FORMATS["torchscript"].file),
            export_path=str(store),
            archive_format="default",
            force=True,
        )
    )
    return name


def model_store(specs: list[ModelSpec], layout: Layout, workdir: Path) -> tuple[Path, ServedNames]:
    """A scratch store under workdir with both setups; {(model, setup): served name}."""
    missing = [
        mar_path(s, layout.model_store)
        for s in specs
        if not mar_path(s, layout.model_store).exists()
    ]
    if missing:
        raise BuildError(
            [f"{layout.shown(p)} not built; run `make archive` first" for p in missing]
        )
    store = workdir / "store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    names: ServedNames = {}
    for spec in specs:
        # what `make archive` built, served under the model's own name
        shutil.copy2(mar_path(spec, layout.model_store), store / f"{spec.name}.mar")
        names[(spec.name, NAME)] = spec.name
        names[(spec.name, STOCK)] = write_stock_mar(spec, layout, store)
    return store, names


def config(rendered: str) -> str:
    """The project's config.properties minus `default_workers_per_model`, so the stock models
    get TorchServe's own default (one worker per core). Token auth stays on."""
    return "".join(
        line + "\n"
        for line in rendered.splitlines()
        if not line.strip().startswith("default_workers_per_model")
    )


def bodies(spec: ModelSpec, rows: dict[str, NDArray[Any]], stock: bool) -> list[str]:
    """One request body per golden example, the same model-input values for both setups:
    the stock handler takes the example itself, this project's handler {"tensors": ...}."""
    count = len(next(iter(rows.values())))
    if stock:
        if len(rows) != 1:
            raise BuildError(f"{spec.name}: the stock BaseHandler route takes one input tensor")
        values = next(iter(rows.values()))
        return [json.dumps(values[i].tolist()) for i in range(count)]
    return [
        json.dumps({"tensors": {n: v[i : i + 1].tolist() for n, v in rows.items()}})
        for i in range(count)
    ]


def input_data(bodies: list[str], folder: Path, tag: str) -> Path:
    """perf_analyzer's torchserve --input-data: {"data": [{"TORCHSERVE_INPUT": [file]}, ...]}."""
    folder.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, list[str]]] = []
    for i, body in enumerate(bodies):
        path = folder / f"{tag}.body{i}.json"
        path.write_text(body)
        entries.append({"TORCHSERVE_INPUT": [str(path.resolve())]})
    data = folder / f"{tag}.input.json"
    data.write_text(json.dumps({"data": entries}))
    return data


def load_targets(
    specs: list[ModelSpec],
    layout: Layout,
    server: TorchServe,
    names: ServedNames,
    workdir: Path,
    setups: tuple[str, ...] = (STOCK, NAME),
) -> DeploymentTargets:
    token = server.key("inference")
    targets: DeploymentTargets = []
    for spec in specs:
        rows = golden(spec, layout)
        for setup in setups:
            data = input_data(
                bodies(spec, rows, setup.endswith("stock")),
                workdir / "data",
                f"{spec.name}.{setup}",
            )
            targets.append(
                (
                    spec.name,
                    setup,
                    "http",
                    LoadTarget(
                        names[(spec.name, setup)],
                        f"127.0.0.1:{server.ports.inference}",
                        "http",
                        "torchserve",
                        data,
                        token,
                    ),
                )
            )
    return targets
