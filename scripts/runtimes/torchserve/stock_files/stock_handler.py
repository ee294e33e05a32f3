"""Stock TorchServe route (what `make bench` compares against): BaseHandler on a TorchScript
file; the body is one example as JSON. Copied into a .mar, never imported by the build."""

import json

import torch
from ts.torch_handler.base_handler import BaseHandler


class StockHandler(BaseHandler):
    def preprocess(self, data):
        rows = []
        for row in data:
            body = row.get("data") if row.get("data") is not None else row.get("body")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            rows.append(body)
        return torch.as_tensor(rows)
