"""Versions on a running tritonserver, through its model-repository API (behind the admin key).

Triton sends an unversioned request to the highest version a model has loaded, and a model's
loaded versions are exactly its `version_policy`. So:
- a candidate version is loaded beside the serving one under a name of its own
  (`<model>.candidate`, from <workdir>/staging/, whose version folder links to triton_repo's):
  the gate reaches it there while `<model>` keeps its versions and its traffic;
- the switch is one repository `load` of `<model>` whose JSON `config` override lists the
  versions to keep loaded: Triton loads what is new while the loaded versions keep serving,
  then moves unversioned traffic at once, and unloads what the policy no longer lists once its
  requests in flight have finished (measured: no failed request under 8 clients);
- a lower version can stay loaded beside the default (for an instant rollback); a higher one
  cannot, since it would take the unversioned traffic.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Any

import requests
from google.protobuf import json_format, text_format
from scripts.runtimes.triton.model_config import ModelConfig, mc

from scripts.pipeline.layout import Layout
from scripts.runtimes.protocols import ServedVersions
from scripts.runtimes.triton import server as tr
from scripts.spec import BuildError, ModelSpec

CANDIDATE = "{}.candidate"


def _repository(
    server: tr.Triton, path: str, body: dict[str, Any] | None = None, timeout_s: float = 300
) -> requests.Response:
    reply = requests.post(
        f"http://{server.http_url}/v2/repository{path}",
        json=body or {},
        timeout=timeout_s,
        headers={tr.ADMIN_HEADER: server.admin_key or ""},
    )
    if not reply.ok:
        raise BuildError(f"tritonserver refused {path}: {reply.status_code} {reply.text[:300]}")
    return reply


def loaded(server: tr.Triton, model: str) -> list[int]:
    """The versions of `model` that are READY, from the repository index."""
    index = _repository(server, "/index", {"ready": True}).json()
    return sorted(
        int(e["version"]) for e in index if e["name"] == model and e.get("state") == "READY"
    )


def policy(default: int, keep: int | None) -> list[int]:
    """The versions to load so that unversioned requests get `default`."""
    return sorted({default, keep}) if keep is not None and keep < default else [default]


def disk_config(repo: Path, model: str) -> ModelConfig:
    return text_format.Parse((repo / model / "config.pbtxt").read_text(), mc.ModelConfig())


def with_versions(config: ModelConfig, versions: list[int], name: str | None = None) -> ModelConfig:
    changed = mc.ModelConfig()
    changed.CopyFrom(config)
    changed.name = name or config.name
    del changed.version_policy.specific.versions[:]
    changed.version_policy.specific.versions.extend(versions)
    return changed


@contextlib.contextmanager
def repository_lock(server: tr.Triton):
    """Held around a change of a model's versions (a rollout's switch, the watchdog's reload),
    so that the watchdog never reloads a model with the versions a switch is replacing."""
    with open(server.workdir / "repository.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def load(server: tr.Triton, config: ModelConfig) -> None:
    """Load (or reload) a model with this config instead of its config.pbtxt."""
    text = json_format.MessageToJson(config, preserving_proto_field_name=True)
    _repository(server, f"/models/{config.name}/load", {"parameters": {"config": text}})


def unload(server: tr.Triton, model: str) -> None:
    _repository(server, f"/models/{model}/unload")


def stage(server: tr.Triton, repo: Path, model: str, version: int) -> str:
    """Load one version of `model` as `<model>.candidate`; returns that name."""
    name = CANDIDATE.format(model)
    folder = server.workdir / tr.STAGING / name
    folder.mkdir(parents=True, exist_ok=True)
    for entry in (str(version), "warmup"):
        link, target = folder / entry, (repo / model / entry).resolve()
        if link.is_symlink():
            link.unlink()
        if target.exists():
            os.symlink(target, link)
    config = with_versions(disk_config(repo, model), [version], name)
    (folder / "config.pbtxt").write_text(text_format.MessageToString(config))
    load(server, config)
    return name


def wait_loaded(server: tr.Triton, model: str, versions: list[int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while loaded(server, model) != versions:
        if time.monotonic() > deadline:
            raise BuildError(
                f"tritonserver: {model} has versions {loaded(server, model)} loaded, "
                f"expected {versions}; see {server.log_file}"
            )
        time.sleep(0.1)


def requests_served(server: tr.Triton, model: str, version: int) -> float:
    """nv_inference_request_success + failure for that version (0 when never served)."""
    total = 0.0
    for line in requests.get(server.metrics_url, timeout=5).text.splitlines():
        if (
            line.startswith(("nv_inference_request_success{", "nv_inference_request_failure{"))
            and f'model="{model}"' in line
            and f'version="{version}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


class TritonVersions:
    """VersionControl on the repository API: candidates staged under their own name, the
    switch one load whose config override lists the versions to keep (see above)."""

    def versions(self, server: tr.Triton, spec: ModelSpec) -> ServedVersions:
        found = loaded(server, spec.name)
        return ServedVersions(found, max(found) if found else None)

    def rollout_problems(self, server: tr.Triton, spec: ModelSpec) -> list[str]:
        return []  # explicit model control and the admin key: every server can load versions

    def load_beside(self, server: tr.Triton, spec: ModelSpec, version: int, layout: Layout) -> bool:
        if version in loaded(server, spec.name):
            return False
        name = stage(server, layout.triton_repo, spec.name, version)
        wait_loaded(server, name, [version])
        return True

    def make_default(
        self, server: tr.Triton, spec: ModelSpec, version: int, keep: int | None, layout: Layout
    ) -> None:
        wanted = policy(version, keep)
        with repository_lock(server):
            load(server, with_versions(disk_config(layout.triton_repo, spec.name), wanted))
            wait_loaded(server, spec.name, wanted)
        candidate = CANDIDATE.format(spec.name)
        if loaded(server, candidate):
            unload(server, candidate)

    def unload(self, server: tr.Triton, spec: ModelSpec, version: int, layout: Layout) -> None:
        candidate = CANDIDATE.format(spec.name)
        if version in loaded(server, candidate):
            unload(server, candidate)
        before = loaded(server, spec.name)
        remaining = [v for v in before if v != version]
        if remaining and len(remaining) < len(before):
            load(server, with_versions(disk_config(layout.triton_repo, spec.name), remaining))

    def requests_served(self, server: tr.Triton, spec: ModelSpec, version: int) -> float:
        return requests_served(server, spec.name, version)
