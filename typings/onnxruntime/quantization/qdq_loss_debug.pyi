"""The part of onnxruntime.quantization.qdq_loss_debug that scripts/pipeline/quantize.py uses."""

from collections.abc import Callable
from typing import Any

from numpy.typing import NDArray

def create_weight_matching(
    float_model_path: str, qdq_model_path: str
) -> dict[str, dict[str, NDArray[Any]]]:
    """{weight name: {"float": ..., "dequantized": ...}} for a float model and its QDQ model."""

def compute_weight_error(
    weights_match: dict[str, dict[str, NDArray[Any]]],
    err_func: Callable[[NDArray[Any], NDArray[Any]], float] = ...,
) -> dict[str, float]:
    """{weight name: the error (by default the signal-to-quantisation-noise ratio, dB)}."""
