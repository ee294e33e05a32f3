"""Measured points and in-process limits as the bench writes them, made up for its unit tests."""

from __future__ import annotations


def point(model, setup, protocol, concurrency, throughput, p50=1.0, p99=2.0):
    return {
        "model": model,
        "setup": setup,
        "protocol": protocol,
        "concurrency": concurrency,
        "throughput": throughput,
        "p50_ms": p50,
        "p90_ms": p50,
        "p99_ms": p99,
        "command": "perf_analyzer ...",
    }


LIMITS = {
    "sentiment_lstm": {
        "batch1": {"format": "onnx", "threads": 1, "batch": 1, "throughput": 100.0, "p50_ms": 0.5},
        "max_batch": {"format": "onnx", "threads": 2, "batch": 32, "throughput": 1000.0},
    },
    "digits_cnn": {
        "batch1": {"format": "onnx", "threads": 1, "batch": 1, "throughput": 2000.0, "p50_ms": 0.1},
        "max_batch": {"format": "onnx", "threads": 2, "batch": 32, "throughput": 9000.0},
    },
}


def in_process_batch1(**extra) -> dict:
    """digits_cnn's in-process result at batch 1, as bench's in-process step records it."""
    row = {"format": "onnx", "threads": 1, "batch": 1, "throughput": 2000.0}
    return {"digits_cnn": [{**row, "p50_ms": 0.1, "p99_ms": 0.2, **extra}]}
