"""Helpers shared by the tests: a TorchServe context without a server, and pipeline comparisons."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ts
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from handler.torchserve_handler import TransformersLabelHandler

JSON = "application/json"
TEXT = "text/plain"
SCORE_TOLERANCE = 1e-5
# A few requests per encoder model fixture, for tests that compare two ways of running them.
ENCODER_BODIES = {
    "sentiment_model": [{"inputs": ["I loved it", "a much longer text about a film that dragged on"]},
                        {"inputs": "meh"}, {"inputs": ["x " * 40], "parameters": {"top_k": None}}],
    "ner_model": [{"inputs": ["Alice Johnson works for Acme in Berlin.", "Bob"]}, {"inputs": "Marie Curie"}],
    "qa_model": [
        {"inputs": {"question": "Where did she move?", "context": "Marie Curie moved to Paris in 1891."}},
        {"inputs": {"question": "Who?", "context": "Bob."}},
    ],
    "nli_model": [
        {"inputs": {"text": "A man is eating a large sandwich at the table.", "text_pair": "Someone eats."}},
        {"inputs": {"text": "Rain.", "text_pair": "It is wet."}},
    ],
}  # fmt: skip


def script(command: str):
    """``hflabels NAME`` called in-process: ``script("archive")(argv)`` is ``archive.py ARGV``."""
    from hflabels.cli import run_command

    def main(argv: Sequence[str]) -> int:
        return run_command(command, list(argv), prog=f"{command.replace('-', '_')}.py")

    return main


def worker_metrics(name: str) -> MetricsCacheYamlImpl:
    """The metrics cache a TorchServe worker gives its context."""
    metrics = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    metrics.initialize_cache()
    metrics.model_name = name
    return metrics


def exact_precision(handler_settings: dict[str, Any] | None) -> dict[str, Any]:
    """The settings with ``dtype: float32`` and torch's own float32 kernel unless they name them:
    the tests that compare with the pipelines to 1e-5 need float32, and both autos decide by timing
    at load, which a CPU busy with other workers loading can fool; two loads compared bit for bit
    must run the same kernel (tests/test_precision.py and tests/test_linear_kernels.py test the
    autos themselves)."""
    settings = dict(handler_settings or {})
    for key, exact in (("dtype", "float32"), ("float32_linear", "torch")):
        if key not in settings and key not in (settings.get("loading") or {}):
            settings[key] = exact
    return settings


def make_context(model_dir: Path, handler_settings: dict[str, Any] | None = None, name: str = "model") -> Context:
    """TorchServe's own Context, as the worker builds it, for a model folder (float32 unless the
    settings name a dtype)."""
    yaml_config = {"handler": exact_precision(handler_settings)}
    return Context(
        name,
        str(model_dir),
        {"model": {"modelName": name}},
        8,
        None,
        "0.12.0",
        metrics=worker_metrics(name),
        model_yaml_config=yaml_config,
    )


def load_handler(
    model_dir: Path, handler_settings: dict[str, Any] | None = None
) -> tuple[TransformersLabelHandler, Context]:
    context = make_context(model_dir, handler_settings)
    handler = TransformersLabelHandler()
    handler.initialize(context)
    return handler, context


def call(
    handler: TransformersLabelHandler, context: Context, requests: Sequence[tuple[str, Any]]
) -> list[tuple[int, Any]]:
    """One TorchServe batch of ``(content type, body)`` requests; ``(status, decoded JSON)`` each."""
    context.request_processor = [RequestProcessor({"Content-Type": content_type}) for content_type, _ in requests]
    context.request_ids = {i: f"request-{i}" for i in range(len(requests))}
    responses = handler.handle([{"body": body} for _, body in requests], context)
    assert len(responses) == len(requests)
    return [(context.get_response_status(i)[0], json.loads(body)) for i, body in enumerate(responses)]


def call_one(
    handler: TransformersLabelHandler, context: Context, body: Any, content_type: str = JSON
) -> tuple[int, Any]:
    return call(handler, context, [(content_type, body)])[0]


def plain(value: Any) -> Any:
    """Pipeline output with numpy scalars turned into Python ones, as JSON would carry them."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def assert_same_answers(ours: Any, reference: Any, tolerance: float = SCORE_TOLERANCE) -> None:
    """Equal structure and values, with every ``score`` equal to within ``tolerance``."""
    reference = plain(reference)
    if isinstance(reference, dict):
        assert isinstance(ours, dict), f"expected an object, got {ours!r}"
        assert set(ours) == set(reference), f"keys {sorted(ours)} != {sorted(reference)}"
        for key, expected in reference.items():
            if key == "score":
                assert abs(ours[key] - expected) <= tolerance, f"score {ours[key]} != {expected}"
            else:
                assert_same_answers(ours[key], expected, tolerance)
    elif isinstance(reference, list):
        assert isinstance(ours, (list, tuple)), f"expected a list, got {ours!r}"
        assert len(ours) == len(reference), f"{len(ours)} items != {len(reference)}: {ours!r} vs {reference!r}"
        for mine, expected in zip(ours, reference):
            assert_same_answers(mine, expected, tolerance)
    else:
        assert ours == reference, f"{ours!r} != {reference!r}"


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# ---- talking to a real torchserve -----------------------------------------------------------


def post(server: Any, model: str, body: Any, content_type: str = JSON, token: str | None = "inference", **kwargs: Any):
    """POST to /predictions/MODEL; ``body`` goes as JSON when it is not bytes or str."""
    import requests

    if isinstance(body, (bytes, str)):
        data = body.encode() if isinstance(body, str) else body
    else:
        data = json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    if token == "inference":
        token = server.inference_token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(server.predictions_url(model), data=data, headers=headers, timeout=120, **kwargs)


def batch_count(server: Any, model: str) -> int:
    """How many batches the model's workers have received so far, from TorchServe's model log."""
    log = server.run_dir / "logs" / "model_log.log"
    return sum(
        1
        for line in log.read_text(errors="replace").splitlines()
        if f"-{model}_" in line and "Backend received inference" in line
    )


def explain(handler, context, bodies):
    context.request_processor = [RequestProcessor({"Content-Type": JSON, "explain": "True"}) for _ in bodies]
    responses = handler.handle([{"body": body} for body in bodies], context)
    return [(context.get_response_status(i)[0], json.loads(body)) for i, body in enumerate(responses)]
