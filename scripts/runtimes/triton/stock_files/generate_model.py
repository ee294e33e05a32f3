"""Stock Triton generation model (what `make bench-generation` compares against): a decoupled
Python-backend model that runs each request through Hugging Face `generate()` on its own and
sends every token as it is made (a transformers streamer feeding the response sender), then an
empty final response. Same
tensors as this project's model (vLLM's contract), so one client reads both. Copied into a
repository, never imported by the build."""

import json
import threading
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from token_queue import TokenQueue  # scripts/runtimes/stock_token_queue.py, copied beside
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast


def response(text: str, tokens: list[int], finish_reason: str):
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_)),
            pb_utils.Tensor("token_ids", np.array(tokens, dtype=np.int64)),
            pb_utils.Tensor("finish_reason", np.array([finish_reason.encode()], dtype=np.object_)),
        ]
    )


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"] / "pretrained"
        self.model = AutoModelForCausalLM.from_pretrained(folder).eval()
        self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))

    def execute(self, requests):
        for request in requests:  # one at a time: this is the stock setup
            self.answer(request)
        return None

    def answer(self, request):
        sender = request.get_response_sender()
        tensor = pb_utils.get_input_tensor_by_name
        prompt = tensor(request, "text_input").as_numpy().reshape(-1)[0].decode()
        sampling = json.loads(tensor(request, "sampling_parameters").as_numpy().reshape(-1)[0])
        ids = torch.tensor([self.tokenizer.encode(prompt)])
        streamer = TokenQueue()
        kwargs = dict(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=sampling["max_tokens"],
            do_sample=False,
            streamer=streamer,
            pad_token_id=self.model.config.eos_token_id,
        )
        worker = threading.Thread(target=self.generate, kwargs=kwargs)
        worker.start()
        end = self.model.config.eos_token_id
        while (token := streamer.tokens.get()) is not None:
            if token != end:  # counted as this project's model counts: the end token is no text
                sender.send(response(self.tokenizer.decode([token]), [token], ""))
        worker.join()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        sender.send(response("", [], "length"), flags=final)

    def generate(self, **kwargs):
        with torch.inference_mode():
            self.model.generate(**kwargs)
