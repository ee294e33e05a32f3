"""perf_analyzer against one load target at one concurrency: a stable measurement window, one
retry with a looser criterion, a last one taking long windows as they come (flagged unstable),
and the exact command (inference key redacted) in the result."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from scripts.measure import perf
from scripts.measure.bench.deployments import LoadTarget

RETRY_STABILITY = 100  # one retry with a looser criterion when a point never stabilises
# Last resort, for a setup whose latency is bimodal (the stock TorchServe route on sentiment_lstm:
# some requests wait ~0.1-1 s in its queue, others not): long windows taken as they come; the
# point is flagged `unstable` in the report instead of having no figure.
AS_MEASURED = {"stability": 1000, "max_trials": 3, "interval_ms": 3000}
TOKEN_PLACEHOLDER = "<inference key from key_file.json>"


def redact(cmd: list[str], token: str | None, headers: tuple = ()) -> str:
    """The command as the report shows it: never a key itself."""
    text = shlex.join(cmd)
    text = text.replace(token, TOKEN_PLACEHOLDER) if token else text
    for name, value in headers:
        text = text.replace(value, f"<{name}>")
    return text


def perf_point(
    target: LoadTarget, concurrency: int, workdir: Path, measurement: dict, timeout_s: float = 120
) -> dict:
    """One concurrency level: the parsed CSV row plus the command; on an unstable window one
    retry with a looser stability criterion; on failure the error instead of figures."""
    env = perf.environment(workdir)
    report = workdir / f"{target.model}.{target.service_kind}.{target.protocol}.c{concurrency}.csv"
    error = ""
    for attempt in (measurement, {**measurement, "stability": RETRY_STABILITY}, AS_MEASURED):
        cmd = perf.command(
            target.model,
            target.url,
            target.protocol,
            concurrency,
            target.data,
            report,
            attempt,
            target.service_kind,
            target.token,
            target.headers,
            target.certificate,
        )
        report.unlink(missing_ok=True)
        started = time.monotonic()
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            error = f"perf_analyzer ran past {timeout_s:.0f}s"
            continue
        seconds = time.monotonic() - started
        if done.returncode == 0 and report.exists():
            row = perf.parse_report(report)[0]
            return {
                **row,
                "stability_pct": attempt["stability"],
                "seconds": round(seconds, 1),
                "command": redact(cmd, target.token, target.headers),
                **({"unstable": True} if attempt is AS_MEASURED else {}),
            }
        error = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
    return {
        "concurrency": concurrency,
        "error": error,
        "command": redact(cmd, target.token, target.headers),
    }


def describe_point(p: dict) -> str:
    """One log line per measured point."""
    head = f"{p['model']:<15} {p['setup']:<17} {p['protocol']:<5} c={p['concurrency']:<3}"
    if "error" in p:
        return f"{head} FAILED: {p['error'].splitlines()[-1] if p['error'] else '?'}"
    return f"{head} {p['throughput']:9.1f}/s  p50 {p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms"
