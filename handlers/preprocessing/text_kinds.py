"""The text kinds: words mapped to ids with the training vocabulary (`text`), and a Hugging Face
`tokenizer.json` making token ids and an attention mask (`tokenizer`). Listed in KINDS
(handlers/preprocessing/kinds.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard, cast

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, PrivateAttr

from handlers.preprocessing.kind_base import Kind, check_count
from handlers.preprocessing.processing import RequestError, tokenize, unicode_text
from handlers.preprocessing.tensors import TensorSpec, check_rows

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def is_text_list(value: object) -> TypeGuard[list[str]]:
    """A JSON value that is a non-empty list of strings."""
    if not isinstance(value, list):
        return False
    items = cast("list[object]", value)
    return bool(items) and all(isinstance(t, str) for t in items)


class Text(Kind):
    """UTF-8 text split into words and mapped to ids with the training vocabulary."""

    kind: Literal["text"]
    vocab: Path  # JSON {"tokens": [...]}: id = position; 0 pads, 1 is the unknown word
    max_length: int = Field(gt=0)
    lowercase: bool = True
    ensemble_input: ClassVar[str | None] = "TEXT"
    encoded_suffix: ClassVar[str | None] = ".txt"
    content_types: ClassVar[tuple[str, ...]] = ("", "text/plain")
    takes_text: ClassVar[bool] = True
    _ids: dict[str, int] = PrivateAttr(default_factory=dict)

    def asset_files(self) -> dict[str, Path]:
        return {"vocab": self.vocab}

    def inline(self, root: Path) -> dict[str, Any]:
        return {"tokens": json.loads((root / self.vocab).read_text())["tokens"]}

    def prepare(self, assets: dict[str, Any]) -> None:
        self._ids = {token: i for i, token in enumerate(assets["tokens"])}

    def expected_input(self, inputs: list[TensorSpec], batched: bool = True) -> str:
        return 'text (Content-Type: text/plain) or JSON {"inputs": "a sentence"}'

    @staticmethod
    def as_text(item: bytes | str) -> str:
        """A request's text, or RequestError when it is not UTF-8 or empty."""
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestError(
                    f"text is not valid UTF-8 ({exc.reason} at byte {exc.start})", "decode"
                ) from None
        if not item.strip():
            raise RequestError("empty text: send a non-empty sentence")
        try:
            return unicode_text(item)
        except ValueError as exc:
            raise RequestError(f"text is {exc}", "decode") from None

    def token_count(self, rows: dict[str, NDArray[Any]], inputs: list[TensorSpec]) -> int:
        return int(np.count_nonzero(rows[self.produces(inputs)[0].name]))  # id 0 pads

    def decode(self, item: bytes | str, tensor: TensorSpec) -> NDArray[Any]:
        return tokenize(self.as_text(item), self._ids, self.max_length, self.lowercase)

    def from_json(
        self, value: Any, tensor: TensorSpec, max_batch: int
    ) -> tuple[NDArray[Any], bool]:
        texts, single = ([value], True) if isinstance(value, str) else (value, False)
        if not is_text_list(texts):
            raise RequestError(
                f"expected a string or a list of strings; send {self.expected_input([tensor])}"
            )
        return check_rows(
            tensor, np.stack([self.decode(t, tensor) for t in texts]), max_batch
        ), single

    def encode(self, row: NDArray[Any], assets: dict[str, Any]) -> bytes:
        tokens = assets["tokens"]
        return " ".join(tokens[i] for i in row.reshape(-1) if i > 1).encode() or b"hello"


class Tokenized(Kind):
    """UTF-8 text through a Hugging Face `tokenizer.json` (the `tokenizers` library): token ids
    and an attention mask, padded to the longest text of the request."""

    kind: Literal["tokenizer"]
    tokenizer: Path  # tokenizer.json
    max_length: int = Field(gt=0)  # longer texts are truncated
    ids: str = "input_ids"  # the model input that takes the token ids
    mask: str | None = (
        "attention_mask"  # the model input that takes the mask (1 = token, 0 = padding)
    )
    ensemble_input: ClassVar[str | None] = "TEXT"
    content_types: ClassVar[tuple[str, ...]] = ("", "text/plain")
    encoded_suffix: ClassVar[str | None] = ".txt"
    takes_text: ClassVar[bool] = True
    _tokenizer: Tokenizer | None = PrivateAttr(None)  # set by prepare()
    _pad_id: int = PrivateAttr(0)

    def asset_files(self) -> dict[str, Path]:
        return {"tokenizer": self.tokenizer}

    def inline(self, root: Path) -> dict[str, Any]:
        return {"tokenizer": (root / self.tokenizer).read_text(encoding="utf-8")}

    def prepare(self, assets: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(assets["tokenizer"])
        self._tokenizer.no_padding()
        # the library's stub leaves enable_truncation's **kwargs untyped
        self._tokenizer.enable_truncation(self.max_length)  # pyright: ignore[reportUnknownMemberType]
        self._pad_id = self._tokenizer.token_to_id("[PAD]") or 0

    def produces(self, inputs: list[TensorSpec]) -> list[TensorSpec]:
        by_name = {t.name: t for t in inputs}
        wanted = [self.ids] + ([self.mask] if self.mask else [])
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise ValueError(
                f"task.preprocess names inputs {missing} that the spec does not list "
                f"(inputs: {sorted(by_name)}); set ids/mask to the model's input names"
            )
        return [by_name[n] for n in wanted]

    def expected_input(self, inputs: list[TensorSpec], batched: bool = True) -> str:
        return (
            'text (Content-Type: text/plain) or JSON {"inputs": "a sentence"} (or a list of them)'
        )

    def token_count(self, rows: dict[str, NDArray[Any]], inputs: list[TensorSpec]) -> int:
        if self.mask:
            return int(rows[self.mask].sum())
        return int(np.count_nonzero(rows[self.ids] != self._pad_id))

    def decode_items(
        self, items: Sequence[bytes | str], inputs: list[TensorSpec], max_batch: int
    ) -> dict[str, NDArray[Any]]:
        check_count(items, max_batch)
        texts = [Text.as_text(item) for item in items]
        if self._tokenizer is None:
            raise RuntimeError("tokenizer: prepare() was not called with the tokenizer")
        encodings = self._tokenizer.encode_batch(texts)
        length = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), length), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)], mask[row, : len(encoding.ids)] = encoding.ids, 1
        produced = self.produces(inputs)
        return {t.name: check_rows(t, rows, max_batch) for t, rows in zip(produced, (ids, mask))}

    def json_inputs(
        self, value: Any, inputs: list[TensorSpec], max_batch: int
    ) -> tuple[dict[str, NDArray[Any]], bool]:
        texts, single = ([value], True) if isinstance(value, str) else (value, False)
        if not is_text_list(texts):
            raise RequestError(
                f"expected a string or a list of strings; send {self.expected_input(inputs)}"
            )
        return self.decode_items(texts, inputs, max_batch), single

    def encode(self, row: NDArray[Any], assets: dict[str, Any]) -> bytes:
        from tokenizers import Tokenizer

        text = Tokenizer.from_str(assets["tokenizer"]).decode([int(i) for i in row.reshape(-1)])
        return text.encode("utf-8") or b"hello"
