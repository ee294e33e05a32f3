"""Weights encrypted at rest, the README's way: with TORCHSHIP_ENCRYPTION_KEY_FILE set,
`make serve` and `make verify` on a user's repository pass on every endpoint of both runtimes,
and no plaintext weight file exists in their repository, TorchServe's temporary folders (where
it unpacks the archives), Triton's repository or its work folder. A weight file copied over
another model's is refused at load with one line; the other model serves."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from handlers.encryption import KEY_ENV, MAGIC
from handlers.formats import FORMATS
from scripts.pipeline.layout import Layout
from scripts.runtimes.processes import ModelsFailed
from scripts.runtimes.protocols import StartOptions
from scripts.runtimes.registry import RUNTIMES
from scripts.runtimes.torchserve import server as torchserve_server
from scripts.spec import load_spec
from tests.conftest import TINY_ENTRY, write_spec
from tests.integration.test_own_repository import PORTS, busy, make

pytestmark = pytest.mark.integration
WEIGHT_FILES = {f.file for f in FORMATS.values() if f.encryptable}


def their_repository(folder: Path) -> Path:
    """Two small models; `vault` is served as an AOTInductor package on TorchServe."""
    import torch

    from models.tabular import TabularMLP

    (folder / "weights").mkdir(parents=True)
    for seed, name in enumerate(("vault", "safe")):
        torch.manual_seed(seed)
        torch.save(TabularMLP(30, 16).state_dict(), folder / "weights" / f"{name}.pt")
    (folder / "labels.txt").write_text("malignant\nbenign\n")
    entries = TINY_ENTRY.format(name="vault", formats="torchscript, onnx, aoti")
    entries += "    serving: {format: onnx}\n    per_runtime: {torchserve: {format: aoti}}\n"
    entries += TINY_ENTRY.format(name="safe", formats="torchscript, onnx")
    return write_spec(folder, entries)


def plaintext_weights(roots: list[Path]) -> list[str]:
    """Every weight file (by its artifact name, loose or inside a .mar) that is not ciphertext,
    and every unpacked AOTInductor package left behind."""
    found = []
    for root in roots:
        for path in root.rglob("*") if root.is_dir() else []:
            if path.name in WEIGHT_FILES and not path.read_bytes().startswith(MAGIC):
                found.append(str(path))
            if path.name.startswith("aotinductor_"):
                found.append(str(path))
            if path.suffix == ".mar":
                with zipfile.ZipFile(path) as archive:
                    found += [
                        f"{path}!{entry}"
                        for entry in archive.namelist()
                        if Path(entry).name in WEIGHT_FILES
                        and not archive.read(entry).startswith(MAGIC)
                    ]
    return found


@pytest.fixture
def key(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "weights.key"
    path.write_text(os.urandom(32).hex())
    path.chmod(0o600)  # a key others can read is refused
    monkeypatch.setenv(KEY_ENV, str(path))  # make's children inherit it
    return path


def test_encrypted_weights_are_served_and_verified_and_never_written_in_plaintext(tmp_path, key):
    taken = [p for p in PORTS if busy(p)]
    assert not taken, f"`make serve`'s ports {taken} are in use: stop what runs there (`make stop`)"
    spec = their_repository(tmp_path / "their-repo")
    out = spec.parent
    served = make("serve", f"SPEC={spec}")
    try:
        assert served.returncode == 0, served.stdout[-3000:] + served.stderr[-3000:]
        verified = make("verify", f"SPEC={spec}")
        assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
        state = Layout.of(out).run
        temp = torchserve_server.TorchServe(state / "torchserve", torchserve_server.Ports()).temp
        assert list(temp.glob("models/*/model.*")), "TorchServe has unpacked no archive"
        assert plaintext_weights([out, temp, Path("/dev/shm")]) == []
    finally:
        make("stop", f"SPEC={spec}")
    report = json.loads((out / "reports" / "verify.json").read_text())
    endpoints = {c["endpoint"] for c in report["checks"]}
    assert {"torchserve-rest", "torchserve-grpc", "triton-http", "triton-grpc"} <= endpoints
    assert all(c["passed"] for c in report["checks"]), report

    # another model's weights copied over vault's: refused at load, safe still serves
    repo = out / "triton_repo"
    shutil.copy2(repo / "safe" / "1" / "model.onnx", repo / "vault" / "1" / "model.onnx")
    models = load_spec(spec).models
    triton = RUNTIMES["triton"]
    with pytest.raises(ModelsFailed) as failed:
        triton.server.start(
            models, Layout.of(out), StartOptions(workdir=tmp_path / "triton", free_ports=True)
        )
    try:
        assert set(failed.value.failed) == {"vault"}
        assert "model.onnx does not decrypt" in str(failed.value)
        assert failed.value.server is not None  # serving safe
    finally:
        triton.server.stop(tmp_path / "triton")
