"""The one table of tensor dtypes: the spec's names, numpy's, and Triton's datatypes.

Shared by the spec (which names are valid), the handlers (decoding and checking requests),
the Triton configs (`TYPE_<datatype>`) and the clients (KServe v2 datatype strings).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import DTypeLike

# spec name -> (numpy dtype, Triton / KServe v2 datatype)
DTYPES: dict[str, tuple[type[np.generic], str]] = {
    "float32": (np.float32, "FP32"),
    "float16": (np.float16, "FP16"),
    "float64": (np.float64, "FP64"),
    "int8": (np.int8, "INT8"),
    "int16": (np.int16, "INT16"),
    "int32": (np.int32, "INT32"),
    "int64": (np.int64, "INT64"),
    "uint8": (np.uint8, "UINT8"),
    "bool": (np.bool_, "BOOL"),
}
DType = Literal["float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]
BYTES = "BYTES"  # Triton's string/bytes datatype (config.pbtxt: TYPE_STRING)


def numpy_dtype(name: str) -> type[np.generic]:
    return DTYPES[name][0]


def triton_datatype(name: str) -> str:
    return DTYPES[name][1]


def spec_dtype(datatype: str) -> str:
    """A Triton datatype ("FP32") -> the spec's name ("float32")."""
    return next(name for name, (_, triton) in DTYPES.items() if triton == datatype)


def spec_dtype_of_numpy(dtype: DTypeLike) -> str:
    """A numpy dtype -> the spec's name (numpy's own names are the spec's, bool_ aside)."""
    return "bool" if np.dtype(dtype) == np.bool_ else np.dtype(dtype).name
