"""The part of onnxruntime.quantization that scripts/pipeline/quantize.py uses."""

from abc import ABCMeta, abstractmethod
from enum import Enum
from pathlib import Path
from typing import Any

class QuantType(Enum):
    QInt8 = 0
    QUInt8 = 1
    QFLOAT8E4M3FN = 2
    QInt16 = 3
    QUInt16 = 4
    QInt4 = 5
    QUInt4 = 6

class QuantFormat(Enum):
    QOperator = 0
    QDQ = 1

class CalibrationDataReader(metaclass=ABCMeta):
    @abstractmethod
    def get_next(self) -> dict[str, Any] | None:
        """The next {input name: array} feed, None when there are no more."""

def quantize_dynamic(
    model_input: str | Path,
    model_output: str | Path,
    op_types_to_quantize: list[str] | None = None,
    per_channel: bool = False,
    reduce_range: bool = False,
    weight_type: QuantType = ...,
    nodes_to_quantize: list[str] | None = None,
    nodes_to_exclude: list[str] | None = None,
    use_external_data_format: bool = False,
    extra_options: dict[str, Any] | None = None,
) -> None: ...
def quantize_static(
    model_input: str | Path,
    model_output: str | Path,
    calibration_data_reader: CalibrationDataReader | None = None,
    quant_format: QuantFormat = ...,
    op_types_to_quantize: list[str] | None = None,
    per_channel: bool = False,
    reduce_range: bool = False,
    activation_type: QuantType = ...,
    weight_type: QuantType = ...,
    nodes_to_quantize: list[str] | None = None,
    nodes_to_exclude: list[str] | None = None,
    use_external_data_format: bool = False,
    calibrate_method: Any = ...,
    calibration_providers: list[str] | None = None,
    extra_options: dict[str, Any] | None = None,
    calibration_cache_path: str | Path | None = None,
) -> None: ...
