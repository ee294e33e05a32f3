"""Stock TorchServe generation route (what `make bench-generation` compares against): BaseHandler
loading the Hugging Face folder, one request at a time through `generate()`, each token sent as
it is made with `send_intermediate_predict_response` (TorchServe's streaming example, fed by a
transformers streamer), then an empty last chunk. Same JSON lines as this project's route, so
one client reads both.
Copied into a .mar, never imported by the build."""

import json
from pathlib import Path

from stock_streaming import greedy_tokens  # scripts/runtimes/stock_streaming.py, copied beside
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler


class StockGenerateHandler(BaseHandler):
    def initialize(self, context):
        folder = Path(context.system_properties["model_dir"]) / "pretrained"
        self.model = AutoModelForCausalLM.from_pretrained(folder).eval()
        self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
        self.initialized = True

    def handle(self, data, context):
        body = data[0].get("data") or data[0].get("body")
        body = json.loads(body) if isinstance(body, (bytes, bytearray)) else body
        prompt = self.tokenizer.encode(body["prompt"])
        for token in greedy_tokens(self.model, prompt, body["max_tokens"]):
            piece = {"text": self.tokenizer.decode([token]), "token_ids": [token]}
            send_intermediate_predict_response(
                [json.dumps({**piece, "finish_reason": None}) + "\n"],
                context.request_ids,
                "Intermediate Prediction success",
                200,
                context,
            )
        return [json.dumps({"text": "", "token_ids": [], "finish_reason": "length"}) + "\n"]
