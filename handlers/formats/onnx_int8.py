"""int8 ONNX: the verified ONNX export quantised by onnxruntime.quantization behind an accuracy
gate (scripts/pipeline/quantize.py makes it: it needs the spec's calibration data)."""

from __future__ import annotations

from pathlib import Path

from handlers.formats.base import Format, Runner
from handlers.formats.onnx import onnx_runner


class OnnxInt8(Format):
    name = "onnx_int8"
    title = "int8 ONNX"
    file = "model.int8.onnx"
    engine = "onnxruntime"
    quantized_from = "onnx"
    # Triton's onnxruntime backend is given the fp32 model.onnx; int8 runs on our Python backend

    def runner(
        self,
        path: str | Path,
        input_names: list[str],
        threads: int | None,
        output_names: list[str] | None,
        plain: bytes | None,
    ) -> Runner:
        return onnx_runner(str(path) if plain is None else plain, threads)
