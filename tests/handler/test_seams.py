"""The seams: one execution policy, typed results rendered once, one scoring core; and the defects
found beside them (each test here fails on the code before the fix)."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support import call_one, explain, load_handler

from handler.api.request_parsing import RequestBody
from handler.api.types import BatchResult, ClassScores, ParsedRequest, RequestOutcome
from handler.engine.execution import ExecutionPolicy
from handler.postprocess.scoring import LogitCalibration, served_scores, softmax, zero_shot_scores

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

# ---- one execution policy ------------------------------------------------------------------------


def test_every_forward_runs_in_the_policys_context_and_leaves_as_float32():
    policy = ExecutionPolicy(torch.device("cpu"), autocast_dtype=torch.bfloat16)
    linear = torch.nn.Linear(8, 4)
    with policy.forward_context():
        assert torch.is_inference_mode_enabled() and torch.is_autocast_enabled("cpu")
        out = linear(torch.ones(2, 8))
    assert out.dtype is torch.bfloat16
    assert policy.to_numpy(out).dtype == np.float32
    with ExecutionPolicy(torch.device("cpu")).forward_context(gradients=True):
        assert torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
    assert "autocast bfloat16" in policy.describe()


def test_the_policy_is_fixed_at_load_from_the_settings_and_the_measurement(sentiment_model):
    handler, _ = load_handler(sentiment_model, {"packed_forward": False, "batch_overhead_tokens": 12})
    policy = handler.runner.policy
    assert (policy.packed, policy.batch_overhead_tokens, policy.weight_dtype) == (False, 12, torch.float32)
    with pytest.raises(Exception, match="frozen|cannot assign"):
        policy.packed = True  # type: ignore[misc]


def test_no_task_module_opens_its_own_inference_context():
    handler_dir = Path(__file__).resolve().parents[2] / "handler"
    for path in [*handler_dir.glob("tasks/*.py"), handler_dir / "engine" / "encoder_runner.py"]:
        text = path.read_text(encoding="utf-8")
        assert "torch.inference_mode" not in text and "torch.no_grad" not in text, path


# ---- typed results, rendered once ----------------------------------------------------------------


def test_classification_outcomes_carry_typed_results_that_the_answer_renders(sentiment_model):
    handler, _ = load_handler(sentiment_model)
    runner = handler.runner
    body = RequestBody(["I loved it", "awful"], {"top_k": 2}, is_json=True)
    [outcome] = runner.run([runner.parse(body)]).outcomes
    assert len(outcome.results) == 2 and all(isinstance(result, ClassScores) for result in outcome.results)
    for result, answer in zip(outcome.results, outcome.payload):
        best = int(np.argmax(result.scores))
        assert result.decision == (best,) and answer[0]["label"] == result.labels[best]
        assert answer[0]["score"] == pytest.approx(float(result.scores[best]), abs=0)
        assert float(np.sum(result.scores)) == pytest.approx(1.0, abs=1e-6)


def test_a_single_input_gets_one_answer_and_a_list_a_list_in_one_place():
    request = ParsedRequest(("a",), False, None)
    listed = ParsedRequest(("a",), True, None)
    assert RequestOutcome.answered(request, [1], str).payload == "1"
    assert RequestOutcome.answered(listed, [1], str, truncated_inputs=1) == RequestOutcome(
        payload=["1"], results=(1,), truncated_inputs=1
    )


def test_zero_shot_results_are_class_scores_over_the_candidates(nli_model):
    handler, _ = load_handler(nli_model, {"task": "zero_shot_classification"})
    runner = handler.runner
    body = RequestBody("the team won", {"candidate_labels": ["sport", "politics", "food"]}, is_json=True)
    [outcome] = runner.run([runner.parse(body)]).outcomes
    [result] = outcome.results
    assert isinstance(result, ClassScores) and result.labels == ("sport", "politics", "food")
    assert outcome.payload["labels"] == [result.labels[i] for i in result.decision]


# ---- one scoring core ----------------------------------------------------------------------------


def test_zero_shot_scores_stay_finite_for_large_logits_and_equal_the_exact_softmax():
    logits = np.array([[-90.0, 0.0, 90.0], [-80.0, 0.0, 95.0], [0.0, 0.0, 88.0]], dtype=np.float32)
    for multi_label in (False, True):
        scores = zero_shot_scores(logits, 2, multi_label)
        assert np.all(np.isfinite(scores))
    # The pipeline's arithmetic, in float64 where exp(95) is finite.
    exact = np.exp(logits[:, 2].astype(np.float64)) / np.exp(logits[:, 2].astype(np.float64)).sum()
    np.testing.assert_allclose(zero_shot_scores(logits, 2, False), exact, atol=1e-6)


def test_a_sharp_calibration_makes_no_nan_in_zero_shot_answers(nli_model):
    calibration = {"temperature": 0.01}
    handler, context = load_handler(nli_model, {"task": "zero_shot_classification", "calibration": calibration})
    status, answer = call_one(handler, context, {"inputs": "the team won", "parameters": {"candidate_labels": "a,b"}})
    assert status == 200 and all(np.isfinite(answer["scores"])), answer


def test_training_calibration_and_serving_share_one_function():
    from hflabels.training import calibration as fitting
    from hflabels.training import evaluation as training

    logits = np.array([[800.0, -800.0], [-3.0, 2.0]])
    assert fitting.softmax is softmax
    assert np.all(np.isfinite(fitting.sigmoid(logits)))  # the fitting code's sigmoid overflowed here
    assert training.LogitCalibration is LogitCalibration
    fitted = training.fit_calibration("single_label", logits, np.array([0, 1]), np.array([2.0, 0.5]))
    assert isinstance(fitted, LogitCalibration)
    from handler.postprocess.scoring import Activation

    np.testing.assert_allclose(
        served_scores(logits, Activation.SOFTMAX, fitted),
        softmax((logits - fitted.adjustment) / fitted.temperature),
    )


# ---- streams are never sent twice ----------------------------------------------------------------


class StreamsThenFails:
    """An executor whose batch streams one event for its first request, then breaks."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, requests, sinks=None):  # noqa: ANN001
        self.runs += 1
        if len(requests) > 1:
            sinks[0]("data: {}\n\n")
            raise RuntimeError("the batch broke")
        return BatchResult([RequestOutcome(payload={"ok": True})])


def test_a_failed_batch_reruns_its_requests_but_not_a_stream_that_already_sent():
    from handler.torchserve_handler import TransformersLabelHandler

    sent: list[str] = []
    executor = StreamsThenFails()
    requests = [ParsedRequest(("a",), False, None), ParsedRequest(("b",), False, None)]
    result = TransformersLabelHandler._run_isolated(executor, requests, [sent.append, None])
    assert sent == ["data: {}\n\n"], "the stream's event went out once"
    assert result.outcomes[0].error is not None and result.outcomes[0].error.status == 500
    assert result.outcomes[1].payload == {"ok": True}
    assert executor.runs == 2  # the batch, then the second request alone


# ---- explanations ------------------------------------------------------------------------------


def test_explanations_answer_in_the_requested_label_set(sentiment_model, tmp_path):
    folder = shutil.copytree(sentiment_model, tmp_path / "model")
    shutil.copyfile(MAPPINGS / "sentiment_3way.de.json", folder / "index_to_name.de.json")
    handler, context = load_handler(folder, {"explain_steps": 8})
    [(status, main)] = explain(handler, context, [{"inputs": "great", "parameters": {"target": "positive"}}])
    bodies = [{"inputs": "great", "parameters": {"target": "positiv", "label_set": "de"}},
              {"inputs": "great", "parameters": {"target": "positive", "label_set": "de"}}]  # fmt: skip
    [(status_de, german), (status_bad, refused)] = explain(handler, context, bodies)
    assert status == status_de == 200 and german["target"] == "positiv"
    assert german["target_score"] == pytest.approx(main["target_score"], abs=1e-6)
    assert status_bad == 400 and "'positiv'" in refused["error"]


def test_explanations_read_the_runners_calibration_through_its_type(sentiment_model):
    source = inspect.getsource(sys.modules["handler.tasks.explanations"])
    assert "getattr(runner" not in source
    handler, _ = load_handler(sentiment_model, {"calibration": {"temperature": 2.0}})
    assert handler.explainer.calibration is not None
    assert float(handler.explainer.calibration[1][0]) == 2.0


# ---- served int8 only --------------------------------------------------------------------------


def test_the_archive_carries_only_the_served_quantization():
    from handler.engine import model_loading

    source = inspect.getsource(model_loading)
    assert "per_channel" not in source and "fp32_head" not in source
    assert list(inspect.signature(model_loading.quantized).parameters) == ["model"]


# ---- torchserve control --------------------------------------------------------------------------


def test_stop_kills_a_frontend_that_ignores_torchserve_stop(tmp_path, monkeypatch):
    from hflabels import torchserve_control

    run_dir = tmp_path / "run"
    (run_dir / "tmp").mkdir(parents=True)
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"]
    )
    try:
        time.sleep(0.3)
        (run_dir / "tmp" / ".model_server.pid").write_text(str(stubborn.pid))
        monkeypatch.setattr(torchserve_control, "torchserve_command", lambda: shutil.which("true"))
        started = time.monotonic()
        assert torchserve_control.stop(run_dir, timeout=0.5, kill_timeout=2.0) is True
        assert stubborn.poll() is not None, "still running after stop() said it stopped"
        assert time.monotonic() - started < 10
    finally:
        if stubborn.poll() is None:
            stubborn.kill()


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    import socket

    from hflabels.torchserve_config import ephemeral_low, free_ports

    ports = free_ports(5)
    assert len(set(ports)) == 5
    if ephemeral_low() > 21000:
        assert all(port < ephemeral_low() for port in ports)
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def test_the_java_check_accepts_what_its_hint_asks_for(tmp_path, monkeypatch):
    from hflabels import torchserve_control

    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert f"Java {torchserve_control.MIN_JAVA}" in torchserve_control.JAVA_HINT
    with pytest.raises(torchserve_control.ServeError, match="Java 11 is too old"):
        torchserve_control.java_version()
