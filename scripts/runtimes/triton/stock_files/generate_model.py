"""Stock Triton generation model (what `make bench-generation` compares against): a decoupled
Python-backend model that runs each request through Hugging Face `generate()` on its own and
sends every token as it is made (a transformers streamer feeding the response sender), then an
empty final response. Same tensors as this project's model (vLLM's contract), so one client
reads both. Copied into a repository, never imported by the build."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from stock_streaming import greedy_tokens  # scripts/runtimes/stock_streaming.py, copied beside
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
        ids = self.tokenizer.encode(prompt)
        for token in greedy_tokens(self.model, ids, int(sampling["max_tokens"])):
            sender.send(response(self.tokenizer.decode([token]), [token], ""))
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        sender.send(response("", [], "length"), flags=final)
