"""`make bench-generation`'s Triton deployment: this project's generation model exactly as
`make triton-repo` wrote it, beside the stock model a user writes first (a decoupled
Python-backend model running each request through Hugging Face `generate()` on its own and
streaming every token; one CPU instance), in one scratch repository."""

from __future__ import annotations

import shutil
from pathlib import Path

from handlers.formats import FORMATS
from scripts.pipeline.layout import Layout
from scripts.pipeline.plan import serving_plan
from scripts.runtimes.triton.configs import write_config
from scripts.runtimes.triton.generation import generation_config
from scripts.runtimes.triton.model_config import mc
from scripts.runtimes.triton.stock import STOCK, copy_model, stock_name
from scripts.runtimes.triton.settings import NAME
from scripts.spec import BuildError, ModelSpec

STOCK_GENERATE_MODEL = Path(__file__).with_name("stock_files") / "generate_model.py"
STOCK_STREAMING = Path(__file__).parents[1] / "stock_streaming.py"


def write_stock_generate_model(spec: ModelSpec, layout: Layout, repo: Path) -> str:
    """The same tensors as this project's model (vLLM's contract), the stock model.py and the
    Hugging Face folder (linked: the same files the build exported)."""
    config = generation_config(serving_plan(spec, layout))
    config.name = stock_name(spec)
    config.ClearField("parameters")
    config.ClearField("instance_group")
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    folder = repo / config.name
    version = folder / str(spec.version)
    version.mkdir(parents=True)
    shutil.copy2(STOCK_GENERATE_MODEL, version / "model.py")
    shutil.copy2(STOCK_STREAMING, version / "stock_streaming.py")
    (version / "pretrained").symlink_to(
        (layout.artifact_dir(spec) / FORMATS["pretrained"].file).resolve()
    )
    write_config(config, folder)
    return config.name


def generation_repository(spec: ModelSpec, layout: Layout, repo: Path) -> dict[str, str]:
    """Both setups in a scratch repository; {setup key: served name}."""
    built = layout.triton_repo / spec.name
    if not (built / "config.pbtxt").exists():
        raise BuildError(f"{layout.shown(built)} not built; run `make triton-repo` first")
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    copy_model(built, repo / spec.name, str(spec.version))
    return {NAME: spec.name, STOCK: write_stock_generate_model(spec, layout, repo)}
