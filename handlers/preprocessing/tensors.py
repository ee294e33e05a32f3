"""Model tensors: their spec (name, dtype, shape, valid range) and the checks every request's
rows go through before they reach a model, on both runtimes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from handlers.preprocessing.dtypes import DType, numpy_dtype
from handlers.preprocessing.processing import RequestError

TENSOR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=TENSOR_NAME_PATTERN)
    dtype: DType
    shape: list[int] = Field(min_length=1)
    # Valid values (inclusive), e.g. token ids below the vocabulary size: used to draw
    # verification inputs and to reject out-of-range requests.
    range: tuple[float, float] | None = None

    @field_validator("shape")
    @classmethod
    def _sizes(cls, shape: list[int]) -> list[int]:
        # whether the first axis is a batch axis depends on the model's batching (spec check)
        if any(d == 0 or d < -1 for d in shape):
            raise ValueError(f"dimensions must be positive or -1 (dynamic), got {shape}")
        return shape

    @property
    def numpy(self) -> type[np.generic]:
        return numpy_dtype(self.dtype)


def numeric_array(value: Any, name: str, dtype: DTypeLike) -> NDArray[np.float64]:
    """JSON numbers -> float64 array, refusing ragged lists, NaN/Inf and, for integer inputs,
    fractions. Booleans: true/false (or 0/1) for bool inputs only."""
    try:
        array = np.asarray(value, dtype=np.float64)
        # numpy would read true/false as 1/0: a boolean where a number belongs is a mistake
        has_bool = isinstance(value, list) and any(
            isinstance(v, bool) for v in np.asarray(value, dtype=object).flat
        )
    except (ValueError, TypeError, RecursionError):
        raise RequestError(
            f"{name}: expected a (nested) list of numbers of equal lengths", "shape"
        ) from None
    if np.dtype(dtype) == np.bool_:
        if not np.all((array == 0) | (array == 1)):
            raise RequestError(f"{name}: expected true/false (or 0/1)", "dtype")
        return array
    if has_bool or isinstance(value, bool):
        raise RequestError(f"{name}: expected numbers, got true/false", "dtype")
    if not np.all(np.isfinite(array)):
        raise RequestError(f"{name}: NaN or infinite values are not accepted", "range")
    if np.issubdtype(dtype, np.integer) and not np.all(array == np.round(array)):
        raise RequestError(f"{name}: expected integers", "dtype")
    return array


def check_shape(tensor: TensorSpec, rows: NDArray[Any], batched: bool = True) -> None:
    """Batched models take rows of the spec's shape after its batch axis; a model without a
    batch axis (max_batch_size 0) takes one tensor of exactly the spec's shape."""
    expected = tensor.shape[1:] if batched else tensor.shape
    given = rows.shape[1:] if batched else rows.shape
    ok = rows.ndim == len(tensor.shape) and all(e == -1 or e == s for e, s in zip(expected, given))
    # an empty batch, or an empty dynamic axis of an unbatched tensor, is nothing to run
    if ok and not (rows.shape[0] == 0 if batched else 0 in given):
        return
    if batched:
        wanted = f"expected shape {expected} per example (or a list of them)"
    else:
        wanted = f"expected one tensor of shape {expected} (this model has no batch axis)"
    raise RequestError(f"{tensor.name}: {wanted}, got {list(rows.shape)}", "shape")


def check_rows(tensor: TensorSpec, rows: NDArray[Any], max_batch: int) -> NDArray[Any]:
    """Shape, count, finiteness and range of model-input rows; returns them in the model's dtype.
    `max_batch` 0: the model has no batch axis and takes the tensor whole. Every request pays
    for this: one min and one max over the rows (NaN and infinities show in them), no copy when
    the dtype is already the model's."""
    check_shape(tensor, rows, batched=max_batch > 0)
    if max_batch and rows.shape[0] > max_batch:
        raise RequestError(f"{rows.shape[0]} examples in one request; at most {max_batch}", "size")
    if not tensor.range and rows.dtype == tensor.numpy:
        # already the model's dtype (a runtime's tensors): nothing can overflow in the cast, so
        # only floats are checked, in one pass
        if rows.dtype.kind == "f" and not np.isfinite(rows).all():
            raise RequestError(f"{tensor.name}: NaN or infinite values are not accepted", "range")
        return rows
    if rows.size and (rows.dtype != np.bool_ or tensor.range):
        smallest, largest = rows.min(), rows.max()
        if rows.dtype.kind == "f" and not (math.isfinite(smallest) and math.isfinite(largest)):
            raise RequestError(f"{tensor.name}: NaN or infinite values are not accepted", "range")
        low, high = tensor.range or dtype_limits(tensor.numpy)
        if smallest < low or largest > high:
            raise RequestError(f"{tensor.name}: values must lie in [{low:g}, {high:g}]", "range")
    return rows.astype(tensor.numpy, copy=False)


def dtype_limits(dtype: DTypeLike) -> tuple[float, float]:
    """What the dtype can hold: a bigger number would wrap (integers) or become inf (floats)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iuf":
        info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
        return float(info.min), float(info.max)
    return -np.inf, np.inf
