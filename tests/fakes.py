"""Stand-ins for the runtimes' in-process objects, so run-time code is tested without servers."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.conftest import LAYOUT


class RecordedMetrics:
    """What a handler published: every value by (metric name, label values)."""

    def __init__(self):
        self.values: dict[tuple[str, tuple[str, ...]], list[float]] = {}

    def add(self, name: str, labels, value: float) -> None:
        self.values.setdefault((name, tuple(labels)), []).append(value)

    def total(self, name: str, *labels: str) -> float:
        """The sum of a metric's values whose labels start with `labels`."""
        return sum(
            sum(v)
            for (n, lab), v in self.values.items()
            if n == name and lab[: len(labels)] == labels
        )

    def count(self, name: str, *labels: str) -> int:
        return sum(
            len(v)
            for (n, lab), v in self.values.items()
            if n == name and lab[: len(labels)] == labels
        )


class FakeMetricsCache(RecordedMetrics):
    """ts.metrics' cache as `context.metrics`: add_metric_to_cache -> add_or_update."""

    def add_metric_to_cache(self, name, unit, dimension_names, metric_type):
        cache = self

        class Metric:
            def add_or_update(self, value, dimension_values, request_id=""):
                assert len(dimension_values) == len(dimension_names)
                cache.add(name, dimension_values, value)

        return Metric()


class FakeTorchServeContext:
    """The parts of ts.context.Context a handler uses; records per-request statuses."""

    def __init__(self, model_dir: Path, content_types: list[str | None]):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.metrics = FakeMetricsCache()
        self.content_types = content_types
        self.statuses: dict[int, int] = {}
        self.response_types: dict[int, str] = {}
        self.url_paths: dict[int, str] = {}  # the URL after a request's model version
        self.headers: dict[int, dict[str, str]] = {}  # other headers, by request

    def get_request_header(self, idx: int, key: str) -> str | None:
        if key == "url_path":
            return self.url_paths.get(idx)
        return self.headers.get(idx, {}).get(key)

    def get_all_request_header(self, idx: int) -> dict:
        value = self.content_types[idx]
        return {} if value is None else {"Content-Type": value}

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = code

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.response_types[idx] = value


def unpacked_archive(name: str, into: Path) -> Path:
    """model_store/<name>.mar unpacked, as TorchServe does before calling initialize()."""
    mar = LAYOUT.model_store / f"{name}.mar"
    if not mar.exists():
        pytest.fail(f"{mar} missing: run `make archive` first (make test does)")
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(into)
    return into
