"""Property tests: every request reader, driven with arbitrary JSON values, strings and numbers
(NaN, Infinity, huge integers, lone surrogates, nesting), answers with a success or a 4xx
naming a field, never an exception and never a 5xx. Routes: a generation model's own JSON, its
OpenAI completions and chat routes (TorchServe's adapter), Triton's vLLM tensors, and the
serving core of one-answer models (native JSON, KServe v1 and v2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.engines.completions import FIELDS, Completion
from handlers.protocols import GENERATION_PROTOCOLS, ModelFacts
from handlers.preprocessing.processing import RequestError
from handlers.engines.serving_core import Request, ServingCore
from tests.unit.handlers.conftest import step
from tests.unit.handlers.test_serving_core import CLASSIFIER, Model, sequences

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)  # lone surrogates included: hypothesis draws them
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NAMES = st.sampled_from([*FIELDS, "messages", "n", "stream_options", "inputs", "instances"])
BODIES = st.dictionaries(NAMES | st.text(max_size=8), VALUES, max_size=6) | VALUES


def as_json(value) -> str:
    """As Python's json writes it: NaN, Infinity and lone surrogates (\\ud800) as a client may."""
    return json.dumps(value)


@SETTINGS
@given(body=BODIES)
def test_a_completion_request_is_read_or_refused_by_name(language, body):
    for sent in (body, as_json(body)):
        try:
            assert isinstance(language.read(sent), Completion)
        except RequestError as error:
            assert str(error) and len(str(error)) < 1000


@SETTINGS
@given(data=st.binary(max_size=64))
def test_junk_bytes_are_refused(language, data):
    try:
        language.read(data)
    except RequestError:
        pass


@SETTINGS
@given(body=BODIES, route=st.sampled_from(["", "v1/completions", "v1/chat/completions"]))
def test_torchserve_routes_answer_2xx_or_4xx_and_keep_only_what_they_run(handler, body, route):
    service, context = handler
    context.url_paths, context.statuses = {0: route}, {}
    (answer, stop), *_ = step(service, context, {"r": as_json(body)})
    status = context.statuses.get(0, 200)
    assert status in (200, 400, 429), answer
    adapter = service.engine.generating
    if status != 200:
        assert (
            stop is None and "r" not in adapter.generating.requests and "r" not in adapter.writers
        )
        error = json.loads(answer)
        assert (error["error"] if route else error)["code"] == status  # OpenAI's shape, or ours
    adapter.cancel("r")  # the next example starts from nothing


@SETTINGS
@given(prompt=st.text(max_size=40), sampling=VALUES | BODIES, stream=st.booleans())
def test_triton_vllm_tensors_are_read_or_refused_by_name(language, prompt, sampling, stream):
    """vLLM's tensor contract (the protocol Triton's generation model speaks), read from the
    arrays Triton hands over."""
    protocol = GENERATION_PROTOCOLS["generate"]
    arrays = {
        "text_input": np.array([prompt.encode("utf-8", "surrogatepass")], dtype=np.object_),
        "sampling_parameters": np.array([as_json(sampling).encode()], dtype=np.object_),
        "stream": np.array([stream]),
    }
    try:
        fields, _ = protocol.read(arrays, ModelFacts(None, language.max_prompt_bytes))
        assert isinstance(language.read(fields), Completion)
    except RequestError as error:
        assert str(error)


@pytest.mark.parametrize("plan", [CLASSIFIER, sequences()], ids=["classifier", "sequences"])
@SETTINGS
@given(body=BODIES)
def test_one_answer_models_answer_200_or_4xx(plan, body):
    core = ServingCore(plan, Model())
    for content_type in ("application/json", None):
        answers = core.answer([Request(as_json(body), content_type)])
        assert answers[0].status in (200, 400), answers[0].body
