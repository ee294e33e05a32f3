"""Run NVIDIA's perf_analyzer (the tritonclient wheel's bin/perf_analyzer) against a served model
and read its CSV report: throughput and latency percentiles per concurrency.

Requests carry real data (golden samples, or strings for BYTES inputs), never perf_analyzer's
random values, which would fall outside the spec's ranges (token ids) and be rejected.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from scripts.runtimes.triton import server as tr
from scripts.runtimes.triton.server import ADMIN_HEADER, wheel_dir
from scripts.runtimes.triton.settings import NAME
from scripts.runtimes.triton.stock import write_input_data
from scripts.spec import BuildError

# Short, bounded measurements: stable enough on a small CPU box, never minutes per point.
MEASUREMENT = {"stability": 50, "max_trials": 5, "interval_ms": 2000}
LIBRARIES = {"libcudart.so.12": "libcudart-", "libb64.so.0d": "libb64-"}


def perf_analyzer() -> Path:
    path = Path(sys.executable).with_name("perf_analyzer")
    if not path.exists():
        raise BuildError(f"{path} not found; it ships with the tritonclient wheel (`make install`)")
    return path


def library_dir(workdir: Path) -> Path:
    """perf_analyzer links libcudart.so.12 and libb64.so.0d: point those sonames at the copies
    bundled in the nvidia-pytriton wheel (no CUDA or system package needed)."""
    bundled = wheel_dir().parents[1] / "nvidia_pytriton.libs"
    folder = workdir / "libs"
    folder.mkdir(parents=True, exist_ok=True)
    for soname, prefix in LIBRARIES.items():
        matches = sorted(bundled.glob(f"{prefix}*"))
        link = folder / soname
        if matches and not link.exists():
            link.symlink_to(matches[0])
    return folder


def parse_report(path: Path) -> list[dict]:
    """perf_analyzer's -f CSV -> [{concurrency, throughput, p50_ms, p90_ms, p99_ms}, ...]."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {
            "concurrency": int(r["Concurrency"]),
            "throughput": float(r["Inferences/Second"]),
            **{f"p{p}_ms": float(r[f"p{p} latency"]) / 1000.0 for p in (50, 90, 99)},
        }
        for r in rows
    ]


def command(
    model: str,
    url: str,
    protocol: str,
    concurrency: int,
    data: Path,
    report: Path,
    measurement: dict = MEASUREMENT,
    service_kind: str = "triton",
    token: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    certificate: Path | None = None,
) -> list[str]:
    """One perf_analyzer invocation at one concurrency level (TorchServe: service_kind
    "torchserve" with the inference token as a header; an https:// url verified against
    `certificate`)."""
    cmd = [
        str(perf_analyzer()),
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "--concurrency-range",
        f"{concurrency}:{concurrency}",
        "--input-data",
        str(data),
        "-f",
        str(report),
        "--stability-percentage",
        str(measurement["stability"]),
        "--max-trials",
        str(measurement["max_trials"]),
        "--service-kind",
        service_kind,
    ]
    if "requests" in measurement:  # windows of so many requests: never an empty one, however slow
        cmd += ["--measurement-mode", "count_windows"]
        cmd += ["--measurement-request-count", str(measurement["requests"])]
    else:
        cmd += ["--measurement-interval", str(measurement["interval_ms"])]
    if token is not None:
        cmd += ["-H", f"Authorization:Bearer {token}"]
    for name, value in headers:  # HTTP only: perf_analyzer ignores -H over gRPC
        cmd += ["-H", f"{name}:{value}"]
    if certificate is not None:
        cmd += ["--ssl-https-ca-certificates-file", str(certificate)]
        cmd += ["--ssl-https-verify-peer", "1", "--ssl-https-verify-host", "2"]
    return cmd


def environment(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LD_LIBRARY_PATH": os.pathsep.join(
            [str(library_dir(workdir)), os.environ.get("LD_LIBRARY_PATH", "")]
        ).rstrip(os.pathsep),
    }


def served_admin_key(layout) -> str | None:
    """The admin key of `make serve`'s tritonserver (None when none runs from this layout)."""
    return tr.attach(layout.state(NAME)).admin_key


def run(
    model: str,
    url: str,
    protocol: str,
    concurrency: list[int],
    rows: dict[str, np.ndarray | list[str]],
    workdir: Path,
    timeout_s: float = 300,
    admin_key: str | None = None,
    measurement: dict = MEASUREMENT,
) -> list[dict]:
    """One perf_analyzer run per concurrency level; their parsed rows, in order. `admin_key`:
    Triton's, for the statistics API perf_analyzer reads (sent over HTTP only)."""
    headers = ((ADMIN_HEADER, admin_key),) if admin_key else ()
    workdir = workdir.resolve()
    data_file = write_input_data(rows, workdir / f"{model}.input.json")
    results = []
    for level in concurrency:
        report = workdir / f"{model}.{protocol}.c{level}.csv"
        done = subprocess.run(
            command(model, url, protocol, level, data_file, report, measurement, headers=headers),
            env=environment(workdir),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        output = done.stdout + done.stderr
        if done.returncode != 0 and protocol == "grpc" and "restricted" in output:
            raise BuildError(
                f"perf_analyzer over gRPC cannot measure {model}: it reads Triton's statistics "
                "API, which `make serve` keeps behind the admin key, and sends no header over "
                "gRPC (its -H is HTTP-only); measure over HTTP (--protocol http), or both "
                "protocols with `make bench` (its own server)"
            )
        if done.returncode != 0:
            raise BuildError(
                f"perf_analyzer failed on {model} ({protocol}, concurrency {level}):\n"
                + "\n".join(output.splitlines()[-15:])
            )
        results += parse_report(report)
    return results
