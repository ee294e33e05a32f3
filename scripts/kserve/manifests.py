"""InferenceService manifests from the kserve SDK's typed models (never string templates).
Runs in .venv-kserve only (`python -m scripts.kserve.manifests write|check`): it imports nothing
of the project's but the schema next to it.

For each runtime's bundle, uploaded to <storage_uri>/<runtime>/<bundle id>/:
- <service>-<runtime>.yaml: the service serving this bundle (first deployment, and promotion:
  applying it drops canaryTrafficPercent, so the new revision takes all traffic);
- <service>-<runtime>-canary.yaml: the same with canaryTrafficPercent (the spec's) on the predictor:
  KServe keeps the previous ready revision for the rest of the traffic;
- <service>-<runtime>-rollback.yaml: canaryTrafficPercent 0: all traffic back to the previous one.
- <service>-<runtime>.podmonitor.yml: a Prometheus Operator PodMonitor scraping the service's pods
  (checked against podmonitor.schema.json, the CRD subset it uses).
Canary traffic splitting needs KServe's Serverless mode, so the manifests ask for it. Every
service asks KServe to have its pods scraped (serving.kserve.io/enable-prometheus-scraping) on
its runtime's metrics port. A runtime's secret variables (Triton's admin key) come from the
Secret <service>-<runtime>-secrets, which the cluster's operator creates: no key is written here.
The weights' encryption key, if the artifacts are encrypted, is that Secret's `weights.key`,
mounted read-only as a file (never an environment value) and named by TORCHSHIP_ENCRYPTION_KEY_FILE;
the Secret's key is optional, so plaintext artifacts need none.
Pods are locked down: non-root (uid/gid 1000, the user of both runtimes' images), read-only root
filesystem with an emptyDir for each folder the runtime writes (bundle's `writable_dirs`), no
privilege escalation, every capability dropped, RuntimeDefault seccomp, and no service-account
token (nothing in the pod talks to the Kubernetes API).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import yaml
from kserve import (
    ApiClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
    constants,
)
from kserve import models as kserve_models
from kubernetes.client import (
    V1Capabilities,
    V1EmptyDirVolumeSource,
    V1EnvVar,
    V1EnvVarSource,
    V1KeyToPath,
    V1ObjectMeta,
    V1PodSecurityContext,
    V1ResourceRequirements,
    V1SeccompProfile,
    V1SecretKeySelector,
    V1SecretVolumeSource,
    V1SecurityContext,
    V1Volume,
    V1VolumeMount,
)
from kubernetes.client import models as kubernetes_models

SCHEMA = json.loads(Path(__file__).with_name("inferenceservice.schema.json").read_text())
POD_MONITOR_SCHEMA = json.loads(Path(__file__).with_name("podmonitor.schema.json").read_text())
POD_MONITOR = ".podmonitor.yml"
RUN_AS = 1000  # model-server in pytorch/torchserve-kfs, triton-server in NGC's tritonserver
KEY_DIR, KEY_FILE = "/var/run/secrets/torchship", "weights.key"


def secret_env(bundle: dict) -> list[V1EnvVar]:
    secret = f"{bundle['name']}-secrets"
    return [
        V1EnvVar(
            name=name,
            value_from=V1EnvVarSource(
                secret_key_ref=V1SecretKeySelector(name=secret, key=name.lower())
            ),
        )
        for name in bundle["secret_env"]
    ]


def volume_name(path: str) -> str:
    return path.strip("/").replace("/", "-").replace(".", "") or "root"


def volumes(bundle: dict) -> tuple[list[V1Volume], list[V1VolumeMount]]:
    """An emptyDir for each folder the runtime writes (the root filesystem is read-only) and the
    weights' key from the Secret: a file only the pod's group reads (0440: kubelet adds the
    fsGroup's read), which handlers/encryption.py accepts."""
    written = [
        (V1Volume(name=volume_name(p), empty_dir=V1EmptyDirVolumeSource()), p)
        for p in bundle["writable_dirs"]
    ]
    key = V1Volume(
        name="weights-key",
        secret=V1SecretVolumeSource(
            secret_name=f"{bundle['name']}-secrets",
            items=[V1KeyToPath(key=KEY_FILE, path=KEY_FILE)],
            default_mode=0o440,
            optional=True,
        ),
    )
    mounts = [V1VolumeMount(name=v.name, mount_path=p) for v, p in written]
    mounts.append(V1VolumeMount(name=key.name, mount_path=KEY_DIR, read_only=True))
    return [v for v, _ in written] + [key], mounts


def pod_security() -> V1PodSecurityContext:
    return V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS,
        run_as_group=RUN_AS,
        fs_group=RUN_AS,
        seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
    )


def container_security() -> V1SecurityContext:
    return V1SecurityContext(
        run_as_non_root=True,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=V1Capabilities(drop=["ALL"]),
    )


def pod_monitor(bundle: dict) -> dict:
    """Prometheus Operator's PodMonitor for the service's predictor pods (KServe labels them
    with the service's name), on the runtime's metrics port."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": bundle["name"],
            **({"namespace": bundle["namespace"]} if bundle["namespace"] else {}),
            "labels": {"app.kubernetes.io/managed-by": "torchship"},
        },
        "spec": {
            "selector": {"matchLabels": {"serving.kserve.io/inferenceservice": bundle["name"]}},
            "podMetricsEndpoints": [
                {"portNumber": bundle["metrics_port"], "path": "/metrics", "interval": "15s"}
            ],
        },
    }


def inference_service(bundle: dict, canary: int | None) -> V1beta1InferenceService:
    amounts = {"cpu": bundle["cpu"], "memory": bundle["memory"]} | (
        {"nvidia.com/gpu": str(bundle["gpus"])} if bundle["gpus"] else {}
    )
    pod_volumes, mounts = volumes(bundle)
    model = V1beta1ModelSpec(
        name="kserve-container",
        model_format=V1beta1ModelFormat(name=bundle["model_format"]),
        protocol_version=bundle["protocol"],
        runtime_version=bundle["runtime_version"],
        storage_uri=bundle["storage_uri"],
        resources=V1ResourceRequirements(requests=amounts, limits=dict(amounts)),
        args=bundle["args"] or None,
        env=[*secret_env(bundle), V1EnvVar(name=bundle["key_env"], value=f"{KEY_DIR}/{KEY_FILE}")],
        volume_mounts=mounts,
        security_context=container_security(),
    )
    predictor = V1beta1PredictorSpec(
        model=model,
        volumes=pod_volumes,
        security_context=pod_security(),
        automount_service_account_token=False,
        min_replicas=bundle["min_replicas"],
        max_replicas=bundle["max_replicas"],
        canary_traffic_percent=canary,
    )
    metadata = V1ObjectMeta(
        name=bundle["name"],
        namespace=bundle["namespace"],
        labels={
            "app.kubernetes.io/managed-by": "torchship",
            "torchship/bundle": bundle["bundle_id"],
        },
        annotations={
            "serving.kserve.io/deploymentMode": "Serverless",
            "serving.kserve.io/enable-prometheus-scraping": "true",
            "prometheus.kserve.io/port": str(bundle["metrics_port"]),
            "prometheus.kserve.io/path": "/metrics",
            "torchship/models": ",".join(bundle["models"]),
        },
    )
    return V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1,
        kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=metadata,
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )


def as_dict(isvc: V1beta1InferenceService) -> dict:
    return ApiClient().sanitize_for_serialization(isvc)


def write(bundles: list[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for bundle in bundles:
        stages = {
            "": None,
            "-canary": bundle["canary_percent"],
            "-rollback": 0,
        }  # canaryTrafficPercent
        for suffix, percent in stages.items():
            path = out / f"{bundle['name']}{suffix}.yaml"
            path.write_text(
                yaml.safe_dump(as_dict(inference_service(bundle, percent)), sort_keys=False)
            )
            written.append(path)
        monitor = out / f"{bundle['name']}{POD_MONITOR}"
        monitor.write_text(yaml.safe_dump(pod_monitor(bundle), sort_keys=False))
        written.append(monitor)
    return written


PLAIN = {"str", "int", "float", "bool", "object", "datetime"}


def typed(data, type_name: str, where: str, unknown: list[str]):
    """JSON -> the SDK's typed model (kserve's and kubernetes' classes: the SDK's own
    deserializer knows only kserve's); fields a model does not declare go to `unknown`."""
    if data is None or type_name in PLAIN:
        return data
    if type_name.lower().startswith("list["):  # kserve writes list[X], kubernetes List[X]
        return [
            typed(item, type_name[5:-1], f"{where}[{n}]", unknown) for n, item in enumerate(data)
        ]
    if type_name.lower().startswith(("dict(", "dict[")):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return {k: typed(v, inner, f"{where}.{k}", unknown) for k, v in data.items()}
    klass = getattr(kserve_models, type_name, None) or getattr(kubernetes_models, type_name)
    keys = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    unknown += [f"{where}.{k}" for k in data if k not in keys]
    return klass(
        **{
            keys[k]: typed(v, klass.openapi_types[keys[k]], f"{where}.{k}", unknown)
            for k, v in data.items()
            if k in keys
        }
    )


def problems(path: Path) -> list[str]:
    """A manifest against the CRD subset, and round-tripped through the SDK's typed model."""
    document = yaml.safe_load(path.read_text())
    found = [
        f"{path.name}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(document)
    ]
    unknown: list[str] = []
    model = typed(document, "V1beta1InferenceService", "", unknown)
    found += [
        f"{path.name}: {field.lstrip('.')}: not a field of the InferenceService"
        for field in unknown
    ]
    if as_dict(model) != document:
        found.append(f"{path.name}: does not round-trip through V1beta1InferenceService")
    return found


def main(argv: list[str]) -> int:
    command, folder = argv[0], Path(argv[1])
    if command == "write":
        for path in write(json.loads(sys.stdin.read()), folder):
            print(path)
        return 0
    found = [p for path in sorted(folder.glob("*.yaml")) for p in problems(path)]
    found += [
        f"{path.name}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for path in sorted(folder.glob(f"*{POD_MONITOR}"))
        for e in jsonschema.Draft202012Validator(POD_MONITOR_SCHEMA).iter_errors(
            yaml.safe_load(path.read_text())
        )
    ]
    print("\n".join(found) or "ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
