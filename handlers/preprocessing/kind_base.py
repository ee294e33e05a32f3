"""The base of every pre-processing kind (handlers/preprocessing/kinds.py lists them): what a kind
is asked
at build time (its assets, its encoded request form) and at run time (how a request becomes
checked model-input rows), with the defaults of a kind that takes model-input tensors as they
are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from handlers.preprocessing.processing import RequestError
from handlers.preprocessing.tensors import TensorSpec, check_rows, check_shape, numeric_array


class Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    if TYPE_CHECKING:  # each kind's own field, its Literal name (the union's discriminator)
        kind: Any  # Any: a field of type str could not be narrowed to a Literal by a subclass

    ensemble_input: ClassVar[str | None] = None  # Triton ensemble input (BYTES); None: no ensemble
    content_types: ClassVar[tuple[str, ...]] = ()  # raw (non-JSON) bodies this kind decodes
    encoded_suffix: ClassVar[str | None] = None  # file suffix of what encode() writes
    base64_in_json: ClassVar[bool] = False  # encoded items are binary: base64 in JSON bodies
    takes_text: ClassVar[bool] = False  # one text per example, made into tokens (token_count)

    # --- build time ---------------------------------------------------------------------------
    def asset_files(self) -> dict[str, Path]:
        """{spec field: file} read by this kind; relative to the spec's folder."""
        return {}

    def inline(self, root: Path) -> dict[str, Any]:
        """The assets' content, shipped inside the serving plan (servers read no other file)."""
        return {}

    def encode(self, row: NDArray[Any], assets: dict[str, Any]) -> bytes:
        """A model-input row turned back into what a client sends (ensemble kinds only)."""
        raise NotImplementedError(f"{self.kind} has no encoded request form")

    # --- run time -----------------------------------------------------------------------------
    def prepare(self, assets: dict[str, Any]) -> None:
        """Make run-time lookups from the inlined assets (called once when a model loads)."""

    def expected_input(self, inputs: list[TensorSpec], batched: bool = True) -> str:
        if not batched:
            tensors = ", ".join(f"{t.name} {t.dtype} {t.shape}" for t in inputs)
            return f'JSON {{"inputs": ...}} with {tensors} (no batch axis: the whole tensor)'
        tensors = ", ".join(f"{t.name} {t.dtype} {t.shape[1:]}" for t in inputs)
        return f'JSON {{"inputs": ...}} with {tensors} per example'

    def accepts(self, content_type: str) -> bool:
        return content_type in self.content_types

    def decode(self, item: bytes | str, tensor: TensorSpec) -> NDArray[Any]:
        """One encoded example (image bytes, a text) -> one unchecked model-input row."""
        raise RequestError("this model takes no encoded bytes or text: send JSON")

    def token_count(self, rows: dict[str, NDArray[Any]], inputs: list[TensorSpec]) -> int:
        """The tokens (padding not counted) in one request's model-input rows (text kinds)."""
        raise NotImplementedError(f"{self.kind} makes no tokens")

    def produces(self, inputs: list[TensorSpec]) -> list[TensorSpec]:
        """The model inputs this kind fills from an encoded request: the first, unless the kind
        makes several (token ids and their mask)."""
        return inputs[:1]

    def decode_items(
        self, items: Sequence[bytes | str], inputs: list[TensorSpec], max_batch: int
    ) -> dict[str, NDArray[Any]]:
        """Encoded examples -> checked rows of every input the kind produces. A model without
        a batch axis (max_batch 0) takes exactly one, as its whole tensor."""
        check_count(items, max_batch)
        first = inputs[0]
        if not max_batch:
            if len(items) != 1:
                raise RequestError(
                    f"{len(items)} items in one request; this model has no batch axis: send one"
                )
            return {first.name: check_rows(first, self.decode(items[0], first), max_batch)}
        return {
            first.name: check_rows(
                first, np.stack([self.decode(item, first) for item in items]), max_batch
            )
        }

    def json_inputs(
        self, value: Any, inputs: list[TensorSpec], max_batch: int
    ) -> tuple[dict[str, NDArray[Any]], bool]:
        """The JSON value of "inputs" (not a mapping of tensors) -> (checked rows by input,
        single?)."""
        if len(inputs) > 1:
            raise RequestError(
                'this model has several inputs: send {"inputs": {name: array}} '
                f"with {self.expected_input(inputs)}"
            )
        rows, single = self.from_json(value, inputs[0], max_batch)
        return {inputs[0].name: rows}, single

    def from_json(
        self, value: Any, tensor: TensorSpec, max_batch: int
    ) -> tuple[NDArray[Any], bool]:
        """Raw JSON values of the first input -> (checked rows, single example?)."""
        rows = numeric_array(value, "inputs", tensor.numpy)
        single = bool(max_batch) and rows.ndim == len(tensor.shape) - 1  # one example, unlisted
        rows = rows[None] if single else rows
        check_shape(tensor, rows, batched=bool(max_batch))
        return check_rows(tensor, self.transform(rows), max_batch), single

    def transform(self, rows: NDArray[Any]) -> NDArray[Any]:
        return rows


def check_count(items: Sequence[bytes | str], max_batch: int) -> None:
    """Too many examples are refused before any is decoded (each may be a big image)."""
    if max_batch and len(items) > max_batch:
        raise RequestError(f"{len(items)} examples in one request; at most {max_batch}", "size")
