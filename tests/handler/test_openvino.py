"""``loading.backend: openvino``: answers equal torch's float32, bf16 only through dtype auto's check."""

from __future__ import annotations

import numpy as np
import pytest
from support import ENCODER_BODIES, assert_same_answers, call, load_handler

import handler.engine.encoder_runner as encoder_runner
import handler.engine.precision as precision
from handler.api.errors import ConfigurationError
from handler.engine.execution import fast_bfloat16

pytest.importorskip("openvino")

OPENVINO_FLOAT32 = {"backend": "openvino", "dtype": "float32"}

BODIES = ENCODER_BODIES


@pytest.mark.parametrize("model_fixture", list(BODIES))
def test_openvino_float32_answers_equal_torch_float32(request, model_fixture):
    model_dir = request.getfixturevalue(model_fixture)
    ours, ours_context = load_handler(model_dir, OPENVINO_FLOAT32)
    torch_handler, torch_context = load_handler(model_dir, {"dtype": "float32"})
    assert ours.runner.packer is None  # OpenVINO runs the model's padded graph
    requests = [("application/json", body) for body in BODIES[model_fixture]]
    for (status, answer), (reference_status, reference) in zip(
        call(ours, ours_context, requests), call(torch_handler, torch_context, requests)
    ):
        assert status == reference_status == 200, answer
        assert_same_answers(answer, reference)


@pytest.mark.skipif(fast_bfloat16(__import__("torch").device("cpu")) is None, reason="no bf16 units on this CPU")
def test_dtype_auto_checks_openvinos_bf16_against_its_float32(sentiment_model, monkeypatch):
    # The tiny model is not faster in bf16: the speed test is set aside (the README has a real MiniLM).
    monkeypatch.setattr(precision, "MIN_SPEEDUP", 0.0)
    auto, auto_context = load_handler(sentiment_model, {"backend": "openvino", "dtype": "auto"})
    assert auto.runner.precision.low_precision and auto.serving_metrics.gauges()["LowPrecision"] == 1
    exact, exact_context = load_handler(sentiment_model, {"dtype": "float32"})
    body = [("application/json", {"inputs": ["a text the probe never saw", "short", "x " * 30],
                                   "parameters": {"return_all_scores": True}})]  # fmt: skip
    (_, low), (_, reference) = call(auto, auto_context, body)[0], call(exact, exact_context, body)[0]
    low_scores = np.array([[item["score"] for item in answer] for answer in low])
    reference_scores = np.array([[item["score"] for item in answer] for answer in reference])
    assert np.array_equal(low_scores.argmax(axis=1), reference_scores.argmax(axis=1))
    assert np.abs(low_scores - reference_scores).max() <= 0.02
    # A tolerance nothing meets: float32, equal to torch's.
    monkeypatch.setattr(encoder_runner, "fast_low_precision", lambda device: "avx512_bf16")
    strict, strict_context = load_handler(sentiment_model, {"backend": "openvino", "dtype": "auto",
                                                            "dtype_tolerance": 1e-9})  # fmt: skip
    assert not strict.runner.precision.low_precision and strict.runner.tuner is None


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"torch_compile": True}, "torch_compile is torch's compiler"),
        ({"quantization": "dynamic_int8"}, "quantization dynamic_int8 is torch's int8"),
        ({"dtype": "bfloat16", "torch_compile": True}, "dtype bfloat16 (use float32 or auto"),
    ],
)
def test_settings_openvino_cannot_run_fail_the_load_naming_them(sentiment_model, settings, named):
    with pytest.raises(ConfigurationError, match="handler.loading.backend openvino: ") as raised:
        load_handler(sentiment_model, {"backend": "openvino", **settings})
    assert named in str(raised.value)


def test_text_generation_and_explanations_say_why_not(lm_model, sentiment_model):
    with pytest.raises(ConfigurationError, match="text generation runs torch's generate"):
        load_handler(lm_model, {"backend": "openvino"})
    handler, _ = load_handler(sentiment_model, OPENVINO_FLOAT32)
    assert "the openvino backend does not give" in handler.explain_unavailable


def test_an_unknown_backend_is_refused_at_load(sentiment_model):
    with pytest.raises(ConfigurationError, match="backend"):
        load_handler(sentiment_model, {"backend": "onnx"})
