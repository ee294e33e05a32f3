"""The spec's `access:` on KServe: per InferenceService, Istio's RequestAuthentication (JWTs from
the cluster's identity provider, `access.kserve`) and an AuthorizationPolicy allowing each
client (the JWT's subject) the paths of its models only, health to anyone (probes), and the
metrics port (the PodMonitor's scrape). Written as <service>-<runtime>.access.yaml beside the
InferenceService manifests and checked against istio.schema.json (the CRD subset used).

Why Istio's pair and not KServe's `serving.kserve.io/enable-auth`: that annotation puts a
Kubernetes token and RBAC in front of a whole service (every model or none), in raw deployment
mode, while the canary rollouts here need Serverless mode; Istio's policy has per-path rules
and is what KServe's own service-mesh docs use. What it does not carry: rate limits and
streams at once (Istio needs an EnvoyFilter and a rate-limit service for those)."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import jsonschema
import yaml

from scripts.kserve.storage import KServeBundle
from scripts.spec.access import AccessSpec, Client

SCHEMA = json.loads(Path(__file__).with_name("istio.schema.json").read_text())
SUFFIX = ".access.yaml"
HEALTH_PATHS = ["/v2/health/*", "/ping", "/v1/models", "/v2"]


def model_paths(name: str, version: str | None) -> list[str]:
    """A model's routes on KServe's runtimes: the v2 protocol (Triton, TorchServe), v1's
    `:predict` / `:explain` (TorchServe) and TorchServe's own, one version or all."""
    if version is not None:
        return [f"/v2/models/{name}/versions/{version}/*", f"/predictions/{name}/{version}"]
    return [
        f"/v2/models/{name}",
        f"/v2/models/{name}/*",
        f"/v1/models/{name}",
        f"/v1/models/{name}:*",
        f"/predictions/{name}",
        f"/predictions/{name}/*",
    ]


def client_paths(client: Client, served: list[str]) -> list[str]:
    """The client's patterns matched against the service's served names here (Istio's paths
    take a `*` only at an end, so globs become the names they match now)."""
    paths: list[str] = []
    for pattern in client.models:
        name, _, version = pattern.partition(":")
        for model in sorted(m for m in served if fnmatch.fnmatchcase(m, name)):
            paths += model_paths(model, version or None)
    return paths


def manifests(bundle: KServeBundle, service: str, namespace: str | None, access: AccessSpec):
    """[RequestAuthentication, AuthorizationPolicy] for one InferenceService."""
    selector = {"matchLabels": {"serving.kserve.io/inferenceservice": service}}
    metadata = {
        "name": f"{service}-access",
        **({"namespace": namespace} if namespace else {}),
        "labels": {"app.kubernetes.io/managed-by": "torchship"},
    }
    identity = access.kserve
    rules = [
        {
            "from": [{"source": {"requestPrincipals": [f"{identity.issuer}/{client.name}"]}}],
            "to": [{"operation": {"paths": paths}}],
        }
        for client in access.clients
        if (paths := client_paths(client, bundle.models))
    ]
    rules += [
        {"to": [{"operation": {"paths": HEALTH_PATHS, "methods": ["GET"]}}]},
        {"to": [{"operation": {"ports": [str(bundle.metrics_port)]}}]},
    ]
    return [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": metadata,
            "spec": {
                "selector": selector,
                "jwtRules": [
                    {
                        "issuer": identity.issuer,
                        "jwksUri": identity.jwks_uri,
                        "forwardOriginalToken": False,
                    }
                ],
            },
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": metadata,
            "spec": {"selector": selector, "action": "ALLOW", "rules": rules},
        },
    ]


def problems(path: Path) -> list[str]:
    return [
        f"{path.name} ({doc.get('kind')}): "
        f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for doc in yaml.safe_load_all(path.read_text())
        for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc)
    ]


def write(
    bundles: list[KServeBundle], service: str, namespace: str | None, access: AccessSpec, out: Path
) -> list[Path]:
    written = []
    for bundle in bundles:
        name = f"{service}-{bundle.runtime}"
        path = out / f"{name}{SUFFIX}"
        path.write_text(
            yaml.safe_dump_all(manifests(bundle, name, namespace, access), sort_keys=False)
        )
        written.append(path)
    return written
