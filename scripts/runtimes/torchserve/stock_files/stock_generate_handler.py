"""Stock TorchServe generation route (what `make bench-generation` compares against): BaseHandler
loading the Hugging Face folder, one request at a time through `generate()`, each token sent as
it is made with `send_intermediate_predict_response` (TorchServe's streaming example, fed by a
transformers streamer), then an empty last chunk. Same JSON lines as this project's route, so
one client reads both.
Copied into a .mar, never imported by the build."""

import json
import threading
from pathlib import Path

import torch
from token_queue import TokenQueue  # scripts/runtimes/stock_token_queue.py, copied beside
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
        prompt = torch.tensor([self.tokenizer.encode(body["prompt"])])
        streamer = TokenQueue()
        kwargs = dict(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=body["max_tokens"],
            do_sample=False,
            streamer=streamer,
            pad_token_id=self.model.config.eos_token_id,
        )
        worker = threading.Thread(target=self.generate, kwargs=kwargs)
        worker.start()
        end = self.model.config.eos_token_id
        while (token := streamer.tokens.get()) is not None:
            if token == end:  # counted as this project's route counts: the end token is no text
                continue
            piece = {"text": self.tokenizer.decode([token]), "token_ids": [token]}
            send_intermediate_predict_response(
                [json.dumps({**piece, "finish_reason": None}) + "\n"],
                context.request_ids,
                "Intermediate Prediction success",
                200,
                context,
            )
        worker.join()
        return [json.dumps({"text": "", "token_ids": [], "finish_reason": "length"}) + "\n"]

    def generate(self, **kwargs):
        with torch.inference_mode():
            self.model.generate(**kwargs)
