"""Signed artifacts: `make sign` / a configured key signs every .mar and Triton model folder with
OpenSSF model-signing; with the public key configured, `serve` and `verify-artifacts` refuse a
flipped byte in any served file, naming it. Runs in a scratch checkout (its own model_store/
and triton_repo/, the real exports linked), with a key pair made here and never committed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from scripts.pipeline.layout import Layout
from scripts.pipeline.signing import PRIVATE_KEY_ENV, PUBLIC_KEY_ENV, signature_path
from scripts.measure.variants import link_artifacts
from scripts.spec import load_spec
from tests.conftest import LAYOUT, REPO, scratch_checkout

pytestmark = pytest.mark.integration
SPEC = {m.name: m for m in load_spec(REPO / "models.yaml").models}
MODEL = "digits_cnn"  # a .mar, and a Triton tensor model with an ensemble around it


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    private = ec.generate_private_key(ec.SECP256R1())
    (folder / "private.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "public.pem").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return folder / "private.pem", folder / "public.pem"


@pytest.fixture()
def checkout(tmp_path):
    scratch = tmp_path / "checkout"
    scratch.mkdir()
    shutil.copy(
        REPO / "models.yaml", scratch / "models.yaml"
    )  # a real file: the spec's root is here
    link_artifacts(SPEC[MODEL], SPEC[MODEL], LAYOUT, scratch_checkout(scratch))
    return scratch


def step(checkout, *args, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts",
            *args,
            "--spec",
            str(checkout / "models.yaml"),
            "--model",
            MODEL,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k not in (PRIVATE_KEY_ENV, PUBLIC_KEY_ENV)}
        | env,
    )


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_signed_on_build_verified_then_a_flipped_byte_is_refused(checkout, keys):
    private, public = keys
    built = step(checkout, "archive", env={PRIVATE_KEY_ENV: str(private)})
    assert built.returncode == 0, built.stderr
    built = step(checkout, "triton-repo", env={PRIVATE_KEY_ENV: str(private)})
    assert built.returncode == 0, built.stderr
    mar = checkout / "model_store" / f"{MODEL}.mar"
    folders = [
        checkout / "triton_repo" / n
        for n in (MODEL, f"{MODEL}_pre", f"{MODEL}_post", f"{MODEL}_ensemble")
    ]
    assert all(signature_path(a).exists() for a in [mar, *folders])
    verified = step(checkout, "verify-artifacts", env={PUBLIC_KEY_ENV: str(public)})
    assert verified.returncode == 0 and verified.stdout.count("signature verified") == 5, (
        verified.stdout
    )

    onnx = checkout / "triton_repo" / MODEL / "1" / "model.onnx"
    flip_byte(onnx)
    refused = step(checkout, "serve", env={PUBLIC_KEY_ENV: str(public)})
    assert refused.returncode == 1 and f"{onnx}: changed since it was signed" in refused.stderr, (
        refused.stderr
    )
    assert "refusing to serve" in refused.stderr
    flip_byte(onnx)  # back as signed
    flip_byte(mar)
    refused = step(checkout, "verify-artifacts", env={PUBLIC_KEY_ENV: str(public)})
    assert refused.returncode == 1 and f"{mar}: changed since it was signed" in refused.stderr, (
        refused.stderr
    )


def test_unsigned_and_wrong_key_are_refused(checkout, keys, tmp_path):
    _, public = keys
    assert step(checkout, "archive", env={}).returncode == 0
    refused = step(checkout, "serve", "--runtime", "torchserve", env={PUBLIC_KEY_ENV: str(public)})
    assert refused.returncode == 1 and f"{MODEL}.mar: not signed" in refused.stderr, refused.stderr
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "other.pem").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signed = step(checkout, "sign", env={PRIVATE_KEY_ENV: str(tmp_path / "other.pem")})
    assert signed.returncode == 0, signed.stderr
    refused = step(checkout, "verify-artifacts", env={PUBLIC_KEY_ENV: str(public)})
    assert refused.returncode == 1 and "does not verify with" in refused.stderr, refused.stderr
    missing = step(checkout, "sign", env={PRIVATE_KEY_ENV: str(tmp_path / "nope.pem")})
    assert missing.returncode == 1 and "no such key file" in missing.stderr


def test_a_rolled_out_version_is_signed_when_built_and_refused_when_tampered(
    checkout, keys, monkeypatch
):
    """`make rollout` builds version 2's archive beside the first; with signing on it is signed
    then, and a changed byte in it stops the rollout before anything is loaded."""
    from scripts.pipeline.ensure import ensure_built
    from scripts.rollout.flow import build
    from scripts.runtimes.registry import RUNTIMES
    from scripts.spec import BuildError

    private, public = keys
    second = SPEC[MODEL].at_version(2)
    ensure_built([SPEC[MODEL]], LAYOUT, version=2, through="export")
    link_artifacts(second, second, LAYOUT, Layout.of(checkout))
    spec = load_spec(checkout / "models.yaml").select([MODEL])[0]
    monkeypatch.setenv(PRIVATE_KEY_ENV, str(private))
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(public))
    build(RUNTIMES["torchserve"], spec, 2, Layout.of(checkout))
    archive = checkout / "model_store" / "digits_cnn.v2.mar"
    assert signature_path(archive).exists()
    monkeypatch.delenv(PRIVATE_KEY_ENV)
    flip_byte(archive)
    with pytest.raises(BuildError, match="digits_cnn.v2.mar"):
        build(RUNTIMES["torchserve"], spec, 2, Layout.of(checkout))
