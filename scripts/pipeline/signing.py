"""Signed artifacts, with OpenSSF model-signing's key-based signer (an elliptic-curve key pair;
no network, no transparency log).

Each artifact is signed as a whole (every file of a Triton model folder or KServe tree, or one
`.mar`); the signature, a Sigstore bundle, lies next to it as `<artifact>.sig`. Signing is on when
the environment names a key:

- TORCHSHIP_SIGNING_KEY: the private key (PEM). `make sign` signs everything; `make archive`,
  `make triton-repo` and `make kserve` sign what they (re)build.
- TORCHSHIP_SIGNING_PUBLIC_KEY: the public key (PEM). `make serve` and `make verify-artifacts`
  refuse anything unsigned or changed since it was signed, naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from scripts.spec import BuildError

PRIVATE_KEY_ENV = "TORCHSHIP_SIGNING_KEY"
PUBLIC_KEY_ENV = "TORCHSHIP_SIGNING_PUBLIC_KEY"
# model-signing lists the files in the message of one ValueError (quotes escaped within a list repr)
CHANGED = re.compile(r"Hash mismatch for \\?'(.+?)\\?'")
LISTED = re.compile(r"(Extra|Missing) files (?:found )?in model \\?'[^'\\]*\\?': ([^'\"\]\\]+)")


def configured_key(variable: str) -> Path | None:
    value = os.environ.get(variable)
    if not value:
        return None
    key = Path(value)
    if not key.is_file():
        raise BuildError(f"{variable}={value}: no such key file")
    return key


def signature_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".sig")


def sign(artifacts: list[Path], key: Path) -> list[Path]:
    """Sign each artifact with the private key; returns the signatures written."""
    from model_signing import signing

    signer = signing.Config().use_elliptic_key_signer(private_key=key)
    for artifact in artifacts:
        signer.sign(artifact, signature_path(artifact))
    return [signature_path(a) for a in artifacts]


def problems(artifact: Path, key: Path) -> list[str]:
    """Why an artifact is not what was signed, naming its files; [] when it verifies."""
    from model_signing import verifying

    signature = signature_path(artifact)
    if not signature.exists():
        return [
            f"{artifact}: not signed (no {signature.name}); sign it with `make sign` "
            f"({PRIVATE_KEY_ENV}=<private key>)"
        ]
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=key).verify(artifact, signature)
    except (
        Exception
    ) as exc:  # model-signing raises ValueError for a mismatch, others for a bad bundle
        message = str(exc)
        changed = [
            artifact if name == "." else artifact / name for name in CHANGED.findall(message)
        ]
        listed = [
            f"{artifact}: {kind.lower()} file(s) {names.strip()} (not as signed)"
            for kind, names in LISTED.findall(message)
        ]
        found = [f"{path}: changed since it was signed" for path in changed] + listed
        return found or [
            f"{artifact}: its signature {signature.name} does not verify with {key}: "
            f"{message[:300]}"
        ]
    return []


def refuse_unverified(artifacts: list[Path]) -> None:
    """With a public key configured, BuildError naming every unsigned or tampered file."""
    key = configured_key(PUBLIC_KEY_ENV)
    if key is None:
        return
    found = [p for artifact in artifacts for p in problems(artifact, key)]
    if found:
        raise BuildError(
            [*found, f"refusing to serve: artifacts do not verify against {PUBLIC_KEY_ENV}={key}"]
        )


def sign_if_configured(artifacts: list[Path], rebuilt: set[Path] | None = None) -> list[Path]:
    """With a private key configured, sign what was just (re)built and anything not yet signed."""
    key = configured_key(PRIVATE_KEY_ENV)
    if key is None:
        return []
    todo = [
        a
        for a in artifacts
        if a.exists() and (rebuilt is None or a in rebuilt or not signature_path(a).exists())
    ]
    return sign(todo, key)
