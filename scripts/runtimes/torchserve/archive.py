"""Step `archive`: one TorchServe `.mar` per model in model_store/, with torch-model-archiver.

Each archive holds the exported model (the spec's serving format), the handler and the shared
`handlers/` package, `serving_plan.json` (the typed serving plan), `model-config.yaml` (batching,
workers, timeouts: settings.py) and `manifest.sha256.json`: a SHA-256 of every other packed file,
checked by `verify_archive` before anything is served.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

import handlers
from handlers.adapters.torchserve_handler import SpecHandler
from handlers.plan import ServingPlan
from scripts.pipeline.fingerprint import file_digest, is_fresh, write_stamp
from scripts.pipeline.layout import Layout
from scripts.pipeline.paths import golden_examples, link_or_copy
from scripts.pipeline.plan import copy_handlers, plan_fingerprint, serving_plan
from scripts.runtimes.torchserve.settings import NAME, model_config_yaml
from scripts.spec import BuildError, ModelSpec

HANDLER = Path(handlers.__file__).parent / "adapters" / "torchserve_handler.py"
MANIFEST = "manifest.sha256.json"
# Files torch-model-archiver writes itself; they are not in our manifest.
ARCHIVER_FILES = {"MAR-INF/MANIFEST.json", MANIFEST}


def mar_name(spec: ModelSpec) -> str:
    """<name>.mar for version 1, <name>.v<n>.mar for the others: each version its own file."""
    return f"{spec.name}.mar" if spec.version == 1 else f"{spec.name}.v{spec.version}.mar"


def mar_path(spec: ModelSpec, store: Path) -> Path:
    return store / mar_name(spec)


def stage(plan: ServingPlan, serialized: Path, folder: Path) -> Path:
    """Lay out the extra files: handlers/ as a package (imports stay `handlers.x`), the
    serving plan and the manifest. Returns the model-config.yaml path."""
    package = folder / "extra" / "handlers"
    package.mkdir(parents=True)
    copy_handlers(package)
    plan.save(folder / "extra")
    if serialized.is_dir():  # a generation model's Hugging Face folder travels as it is
        shutil.copytree(serialized, folder / "extra" / serialized.name, copy_function=link_or_copy)
    config = folder / "model-config.yaml"
    config.write_text(yaml.safe_dump(model_config_yaml(plan).settings, sort_keys=False))
    packed = {
        str(p.relative_to(folder / "extra")): p
        for p in (folder / "extra").rglob("*")
        if p.is_file()
    }
    packed.update({"model-config.yaml": config, HANDLER.name: HANDLER})
    packed.update({} if serialized.is_dir() else {serialized.name: serialized})
    manifest = {name: file_digest(path) for name, path in sorted(packed.items())}
    (folder / "extra" / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return config


def archive_model(spec: ModelSpec, layout: Layout, store: Path, force: bool = False) -> bool:
    """Build <store>/<name>.mar (the store: layout.model_store, or a scratch one); returns
    False when it was already up to date."""
    spec = spec.for_runtime(NAME)
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    plan = serving_plan(spec, layout)
    serialized = layout.artifact_dir(spec) / plan.artifact
    if not serialized.exists():
        raise BuildError(f"{spec.name}: {serialized} not found; run `make export` first")
    out = mar_path(spec, store)
    stamp = store / f".{out.stem}.stamp.json"
    code = [
        Path(__file__),
        # a folder's files, a draft's folder inside it included
        *(
            sorted(f for f in serialized.rglob("*") if f.is_file())
            if serialized.is_dir()
            else [serialized]
        ),
    ]
    expected = plan_fingerprint(spec, layout, plan, code=code)
    if not force and is_fresh(stamp, expected, [out]):
        return False
    store.mkdir(parents=True, exist_ok=True)
    out.unlink(
        missing_ok=True
    )  # rebuilt from scratch (and the archiver's overwrite warning avoided)
    with tempfile.TemporaryDirectory(prefix=f"mar-{spec.name}-") as tmp:
        folder = Path(tmp)
        config = stage(plan, serialized, folder)
        generate_model_archive(
            ModelArchiverConfig(
                model_name=spec.name,
                version=str(spec.version),
                handler=str(HANDLER),
                serialized_file=None if serialized.is_dir() else str(serialized),
                extra_files=str(folder / "extra"),
                config_file=str(config),
                export_path=str(folder),
                archive_format="default",
                force=True,
            )
        )
        built = folder / f"{spec.name}.mar"  # the archiver names it after the model
        if serialized.is_dir():
            deflated, built = built, weights_stored(built, folder / "stored.mar")
            deflated.unlink()  # one archive-sized file less on disk at the peak
        shutil.move(built, out)
    problems = verify_archive(out) or check_loads(out, spec, layout)
    if problems:
        out.unlink()
        raise BuildError(problems)
    write_stamp(stamp, expected)
    return True


class ArchiveContext:
    """What a handler reads of TorchServe's context, for loading an archive before any server."""

    def __init__(self, model_dir: Path):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.request_ids = {0: "archive-check"}
        self.statuses: dict[int, int] = {}

    def get_request_header(self, idx: int, key: str) -> str | None:
        return None

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = code

    def set_response_content_type(self, idx: int, value: str) -> None:
        pass


STORED_SUFFIXES = (".safetensors",)


def weights_stored(mar: Path, out: Path) -> Path:
    """The archive again with its weight files stored, not deflated. Weights barely compress
    (GPT-2 small: 498 MB to 461 MB), and TorchServe inflates the archive at every start: 8 s of
    the 22 s it took to READY for zoo_gpt2_small here. Stored, that is a copy at disk speed."""
    with zipfile.ZipFile(mar) as source, zipfile.ZipFile(out, "w") as target:
        for entry in source.infolist():
            info = zipfile.ZipInfo(entry.filename, entry.date_time)
            info.external_attr = entry.external_attr
            stored = entry.filename.endswith(STORED_SUFFIXES)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            with source.open(entry) as data, target.open(info, "w", force_zip64=True) as copy:
                shutil.copyfileobj(data, copy, 1 << 20)
    return out


def check_loads(path: Path, spec: ModelSpec, layout: Layout) -> list[str]:
    """Unpack the archive, initialise the handler on it as a TorchServe worker would and answer
    one golden row: a .mar that cannot load or answer fails here, naming the model."""
    body = check_request(spec, layout)
    with tempfile.TemporaryDirectory(prefix=f"mar-check-{spec.name}-") as tmp:
        with zipfile.ZipFile(path) as mar:
            mar.extractall(tmp)
        context = ArchiveContext(Path(tmp))
        try:
            handler = SpecHandler()
            handler.initialize(context)
            answer = handler.handle([{"body": body}], context)[0]
        except Exception as exc:  # anything a worker would die of
            first = (str(exc).strip().splitlines() or [""])[0]  # not torch's whole traceback
            return [
                f"{path.name}: the handler cannot load it: {type(exc).__name__}: {first}; "
                f"check {spec.name}'s export (`make export MODEL={spec.name}`)"
            ]
    if context.statuses.get(0, 200) != 200:
        return [f"{path.name}: the handler loaded it but refused a golden row: {answer}"]
    return []


def check_request(spec: ModelSpec, layout: Layout) -> str:
    """One golden request's body, as the model's task kind makes it."""

    def golden_row() -> dict[str, Any]:
        return {name: rows.tolist() for name, rows in golden_examples(spec, layout, 1)[0].items()}

    return json.dumps(spec.task.serving.probe_request(golden_row))


def verify_archive(path: Path) -> list[str]:
    """Every file in the .mar must match its SHA-256 in the manifest, and nothing may be
    missing or added; returns the problems (empty when the archive is intact)."""
    try:
        with zipfile.ZipFile(path) as mar:
            manifest = json.loads(mar.read(MANIFEST))
            present = {i.filename for i in mar.infolist() if not i.is_dir()} - ARCHIVER_FILES
            problems = [
                f"{path.name}: {name}: SHA-256 differs from the manifest "
                "(archive tampered or corrupt)"
                for name in sorted(present & set(manifest))
                if hashlib.sha256(mar.read(name)).hexdigest() != manifest[name]
            ]
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        return [
            f"{path.name}: not a valid archive with {MANIFEST}: {exc}; "
            "rebuild it with `make archive`"
        ]
    problems += [
        f"{path.name}: {name}: listed in the manifest but missing"
        for name in sorted(set(manifest) - present)
    ]
    unexpected = sorted(present - set(manifest))
    problems += [
        f"{path.name}: {name}: not in the manifest (unexpected file)" for name in unexpected
    ]
    return problems
