"""One model's request pipeline, shared by the TorchServe handler and Triton's Python models.

Configured by the runtime config that the build writes into every archive and repository
(`model_config.json`: tensors, task, labels and pre-processing state inlined). Turns a request
payload into model-input rows, checks them, and turns output rows into answers. Every client
mistake raises RequestError with a message naming the problem and the expected input.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from handlers.processing import (RequestError, class_scores, decode_image, pil_to_array,
                                 standardize, tokenize, top_labels)

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64,
                "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
                "uint8": np.uint8, "bool": np.bool_}
JSON_KEYS = {"inputs", "tensors"}


def looks_like_json_object(body: Any) -> bool:
    head = body[:64].lstrip() if isinstance(body, (bytes, bytearray, str)) else ""
    return head[:1] in ("{", b"{")


def as_bytes(body: Any) -> bytes:
    return body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)


class Pipeline:
    def __init__(self, config: dict):
        self.config = config
        self.inputs = config["inputs"]
        self.outputs = config["outputs"]
        self.task = config["task"]
        self.preprocess_kind = self.task["preprocess"]["kind"]
        pre = self.task["preprocess"]
        if self.preprocess_kind == "standardize":
            self.mean, self.std = np.asarray(pre["mean"]), np.asarray(pre["std"])
        if self.preprocess_kind == "text":
            self.vocab = {token: i for i, token in enumerate(pre["tokens"])}

    @property
    def expected_input(self) -> str:
        """What a client should send, for error messages."""
        example = {"image": "PNG/JPEG bytes (Content-Type: image/png) or JSON {\"inputs\": HxW array}",
                   "text": "text (Content-Type: text/plain) or JSON {\"inputs\": \"a sentence\"}"}
        tensors = ", ".join(f"{t['name']} {t['dtype']} {t['shape'][1:]}" for t in self.inputs)
        return example.get(self.preprocess_kind, f"JSON {{\"inputs\": ...}} with {tensors} per example")

    # --- requests -> model input rows ----------------------------------------------------------

    def parse(self, body: Any, content_type: str | None) -> tuple[dict[str, np.ndarray], bool]:
        """One request -> ({input name: rows}, single). `single` means the request held one
        example (answer with one object) rather than a list of them (answer with a list)."""
        content_type = (content_type or "").split(";")[0].strip().lower()
        if body is None or (isinstance(body, (bytes, bytearray, str)) and len(body) == 0):
            raise RequestError(f"empty body: send {self.expected_input}")
        if isinstance(body, (dict, list)) or content_type == "application/json" or (
                content_type == "" and looks_like_json_object(body)):
            # gRPC carries no Content-Type: a body that opens with "{" is taken as JSON there.
            return self.parse_json(body)
        if self.preprocess_kind == "image" and (content_type.startswith("image/") or
                                                content_type in ("", "application/octet-stream")):
            return {self.inputs[0]["name"]: self.preprocess_item(as_bytes(body))[None]}, True
        if self.preprocess_kind == "text" and content_type in ("", "text/plain"):
            text = body if isinstance(body, str) else as_bytes(body)
            return {self.inputs[0]["name"]: self.preprocess_item(text)[None]}, True
        if content_type == "":  # no content type: JSON is the one format every model takes
            return self.parse_json(body)
        raise RequestError(f"unsupported Content-Type {content_type!r}: send {self.expected_input}")

    def parse_json(self, body: Any) -> tuple[dict[str, np.ndarray], bool]:
        if isinstance(body, (bytes, bytearray, str)):
            try:
                body = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RequestError(f"body is not valid JSON ({exc}); send {self.expected_input}") from None
        if isinstance(body, dict):
            unknown = sorted(set(body) - JSON_KEYS)
            if unknown or len(body) != 1:
                raise RequestError(f"JSON body needs exactly one of the keys {sorted(JSON_KEYS)}"
                                   + (f"; unknown key(s) {unknown}" if unknown else ""))
            if "tensors" in body:
                return self.parse_tensors(body["tensors"])
            body = body["inputs"]
        return self.preprocess_values(body)

    def preprocess_values(self, value: Any) -> tuple[dict[str, np.ndarray], bool]:
        """Raw JSON inputs (rows, images, sentences) -> pre-processed model rows."""
        first = self.inputs[0]
        if self.preprocess_kind == "text":
            texts, single = ([value], True) if isinstance(value, str) else (value, False)
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise RequestError(f"expected a string or a list of strings; send {self.expected_input}")
            return {first["name"]: np.stack([self.preprocess_item(t) for t in texts])}, single
        if self.preprocess_kind == "image":
            pixels = self.numeric_array(value, "inputs", np.float32)
            if pixels.ndim == 2:          # one grayscale HxW array
                pixels, single = pixels[None, None], True
            elif pixels.ndim == 3:        # one CxHxW array, or several HxW ones
                single = pixels.shape[0] == first["shape"][1]
                pixels = pixels[None] if single else pixels[:, None]
            else:
                single = False
            return {first["name"]: self.check_rows(first, pixels)}, single
        if len(self.inputs) > 1:
            if not isinstance(value, dict):
                raise RequestError(f"this model has several inputs: send {{\"inputs\": {{name: array}}}} "
                                   f"with {self.expected_input}")
            return self.parse_tensors(value)
        rows = self.numeric_array(value, "inputs", np.float64)
        single = rows.ndim == len(first["shape"]) - 1
        rows = rows[None] if single else rows
        self.check_shape(first, rows)
        if self.preprocess_kind == "standardize":
            rows = standardize(rows, self.mean, self.std)
        return {first["name"]: self.check_rows(first, rows)}, single

    def preprocess_item(self, item: bytes | str) -> np.ndarray:
        """One encoded image or one text -> one model input row (no batch axis)."""
        pre = self.task["preprocess"]
        if self.preprocess_kind == "image":
            image = decode_image(item if isinstance(item, bytes) else item.encode())
            row = pil_to_array(image, pre["height"], pre["width"], pre["grayscale"], pre["mean"], pre["std"])
        elif self.preprocess_kind == "text":
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise RequestError(f"text is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not item.strip():
                raise RequestError("empty text: send a non-empty sentence")
            row = tokenize(item, self.vocab, pre["max_length"], pre["lowercase"])
        else:
            raise RequestError(f"this model takes no encoded bytes or text: send {self.expected_input}")
        return self.check_rows(self.inputs[0], row[None])[0]

    def parse_tensors(self, tensors: Any) -> tuple[dict[str, np.ndarray], bool]:
        """Model-input tensors given directly (no pre-processing), e.g. golden samples."""
        if not isinstance(tensors, dict) or set(tensors) != {t["name"] for t in self.inputs}:
            names = [t["name"] for t in self.inputs]
            raise RequestError(f"\"tensors\" must map every input name {names} to an array")
        out = {}
        for t in self.inputs:
            dtype = NUMPY_DTYPES[t["dtype"]]
            rows = self.numeric_array(tensors[t["name"]], t["name"], dtype)
            single = rows.ndim == len(t["shape"]) - 1
            out[t["name"]] = self.check_rows(t, rows[None] if single else rows)
        return out, False

    # --- checks ----------------------------------------------------------------------------------

    @staticmethod
    def numeric_array(value: Any, name: str, dtype) -> np.ndarray:
        try:
            array = np.asarray(value, dtype=np.float64)
            # numpy would read true/false as 1/0: a boolean where a number belongs is a mistake
            has_bool = isinstance(value, list) and any(isinstance(v, bool) for v in np.asarray(value, dtype=object).flat)
        except (ValueError, TypeError):
            raise RequestError(f"{name}: expected a (nested) list of numbers of equal lengths") from None
        if has_bool or isinstance(value, bool):
            raise RequestError(f"{name}: expected numbers, got true/false")
        if not np.all(np.isfinite(array)):
            raise RequestError(f"{name}: NaN or infinite values are not accepted")
        if np.issubdtype(dtype, np.integer) and not np.all(array == np.round(array)):
            raise RequestError(f"{name}: expected integers")
        return array

    def check_shape(self, tensor: dict, rows: np.ndarray) -> None:
        expected = tensor["shape"][1:]
        ok = rows.ndim == len(tensor["shape"]) and all(e == -1 or e == s for e, s in zip(expected, rows.shape[1:]))
        if not ok or rows.shape[0] == 0:
            raise RequestError(f"{tensor['name']}: expected shape {expected} per example (or a list of "
                               f"them), got {list(rows.shape)}; send {self.expected_input}")

    def check_rows(self, tensor: dict, rows: np.ndarray) -> np.ndarray:
        """Shape, finiteness and range of model-input rows; returns them in the model's dtype."""
        self.check_shape(tensor, rows)
        limit = self.config.get("max_batch_size") or math.inf
        if rows.shape[0] > limit:
            raise RequestError(f"{rows.shape[0]} examples in one request; at most {limit}")
        if tensor.get("range") is not None:
            low, high = tensor["range"]
            if rows.size and (rows.min() < low or rows.max() > high):
                raise RequestError(f"{tensor['name']}: values must lie in [{low:g}, {high:g}]")
        return rows.astype(NUMPY_DTYPES[tensor["dtype"]])

    # --- model output rows -> answers ------------------------------------------------------------

    def postprocess(self, outputs: list[np.ndarray]) -> list[dict]:
        """Output rows of one request -> one answer per example: the raw outputs, plus label and
        score for classification."""
        answers = [{"outputs": {t["name"]: o[i].tolist() for t, o in zip(self.outputs, outputs)}}
                   for i in range(len(outputs[0]))]
        if self.task["kind"] == "classification":
            scores = class_scores(outputs[0], self.task["output"])
            for answer, labelled in zip(answers, top_labels(scores, self.task["labels"], self.task["top_k"])):
                answer.update(labelled)
        return answers
