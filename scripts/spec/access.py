"""The spec's `access:` section: who may call which model through the gateway `make serve`
starts in front of both runtimes (scripts/gateway/). A client is a name, a key (never in the
clear in the spec: its SHA-256, or a file outside the repository that holds it), the models it
may call, and how fast and how many at once."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from handlers.metrics import CLIENT_NAME
from handlers.plan import StrictModel

# a model pattern: a served name or a glob over names, optionally ":<version>"
MODEL_PATTERN = r"[A-Za-z0-9_.*?-]+(:[0-9]+)?"


class Client(StrictModel):
    # in the access log, passed to the runtimes, and their metrics' `client` label
    name: str = Field(pattern=f"^{CLIENT_NAME.pattern}$")
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # a file holding the key (made with a random key by `make serve` when absent); relative to
    # the spec's root; keep it out of version control
    key_file: Path | None = None
    models: list[str] = Field(default=["*"], min_length=1)  # MODEL_PATTERN each
    rate: float | None = Field(default=None, gt=0)  # requests per second; None: unlimited
    burst: int = Field(default=0, ge=0)  # requests over the rate let through at once
    streams: int | None = Field(default=None, ge=1)  # requests at once; None: unlimited
    admin: bool = False  # TorchServe's management API and Triton's restricted APIs

    @field_validator("models")
    @classmethod
    def _patterns(cls, models: list[str]) -> list[str]:
        bad = [m for m in models if not re.fullmatch(MODEL_PATTERN, m)]
        if bad:
            raise ValueError(
                f"{bad}: give model names or globs, each optionally with :<version> "
                "(e.g. 'digits_*', 'review_gpt:2')"
            )
        return models

    @model_validator(mode="after")
    def _one_key(self) -> Client:
        if (self.key_sha256 is None) == (self.key_file is None):
            raise ValueError(
                f"client {self.name!r}: give exactly one of key_sha256 (the key's SHA-256 in "
                "hex: `printf %s KEY | sha256sum`) or key_file (a file holding the key)"
            )
        return self


class TLS(StrictModel):
    """The user's certificate and private key (PEM files); without them `make serve` makes a
    self-signed pair for localhost under the run state."""

    certificate: Path
    key: Path


class ClusterIdentity(StrictModel):
    """On KServe the same policy is Istio's: a client proves who it is with a JWT from the
    cluster's identity provider whose subject (`sub`) is the client's name; placeholders until
    you set them."""

    issuer: str = "https://CHANGE-ME.example/issuer"
    jwks_uri: str = "https://CHANGE-ME.example/jwks.json"


class AccessSpec(StrictModel):
    port: int = Field(default=8443, ge=1, le=65535)  # the gateway's one TLS port
    host: str = "127.0.0.1"  # 0.0.0.0 to take clients from other machines
    tls: TLS | None = None
    clients: list[Client] = Field(min_length=1)
    kserve: ClusterIdentity = ClusterIdentity()  # `make kserve`'s Istio policy

    @model_validator(mode="after")
    def _unique_names(self) -> AccessSpec:
        names = [c.name for c in self.clients]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"clients {twice} are named more than once; each needs its own name")
        return self
