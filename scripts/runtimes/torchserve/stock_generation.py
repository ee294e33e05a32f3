"""`make bench-generation`'s TorchServe deployment: this project's generation archive exactly as
`make archive` built it, beside the stock route a user writes first (BaseHandler calling
Hugging Face `generate()` one request at a time and streaming each token; no model-config, so
TorchServe's defaults: batch size 1, one worker per core), in one scratch store."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from handlers.formats import FORMATS
from scripts.pipeline.layout import Layout
from scripts.runtimes.torchserve.archive import mar_path
from scripts.runtimes.torchserve.settings import NAME
from scripts.runtimes.torchserve.stock import STOCK, stock_name
from scripts.spec import BuildError, ModelSpec

STOCK_GENERATE_HANDLER = Path(__file__).with_name("stock_files") / "stock_generate_handler.py"
STOCK_STREAMING = Path(__file__).parents[1] / "stock_streaming.py"


def write_stock_generate_mar(spec: ModelSpec, layout: Layout, store: Path) -> str:
    """The Hugging Face folder and stock_streaming.py as the archive's extra files, and the
    stock handler, with torch-model-archiver's Python API."""
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    name = stock_name(spec)
    with tempfile.TemporaryDirectory(prefix=f"mar-{name}-") as tmp:
        extra = Path(tmp) / "extra"
        extra.mkdir()
        # the archiver copies what a link points to: the weights are read once, into the .mar
        (extra / "pretrained").symlink_to(
            (layout.artifact_dir(spec) / FORMATS["pretrained"].file).resolve()
        )
        shutil.copy2(STOCK_STREAMING, extra / "stock_streaming.py")
        generate_model_archive(
            ModelArchiverConfig(
                model_name=name,
                version=str(spec.version),
                handler=str(STOCK_GENERATE_HANDLER),
                serialized_file=None,
                extra_files=str(extra),
                export_path=str(store),
                archive_format="default",
                force=True,
            )
        )
    return name


def generation_store(spec: ModelSpec, layout: Layout, store: Path) -> dict[str, str]:
    """Both setups in a scratch store; {setup key: served name}."""
    built = mar_path(spec, layout.model_store)
    if not built.exists():
        raise BuildError(f"{layout.shown(built)} not built; run `make archive` first")
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    shutil.copy2(built, store / f"{spec.name}.mar")
    return {NAME: spec.name, STOCK: write_stock_generate_mar(spec, layout, store)}
