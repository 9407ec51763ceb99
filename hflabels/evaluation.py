"""Check a served model against a labelled file, and against the model folder it was built from.

The served predictions come from the endpoint, in batches from several concurrent clients; the
reference predictions from the same model folder and model-config.yaml, computed in-process by the
runner the handler builds (so a difference is the server's: batching, transport, the archive);
the metrics are the ones training reports.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch
import yaml

from handler.api.labels import MAPPING_FILE_NAME, resolve_labels
from handler.api.request_parsing import RequestBody
from handler.engine.model_loading import load_config
from hflabels.training.calibration import calibration_metrics, reliability
from hflabels.training.data import DataError, Example
from hflabels.training.metrics import entity_metrics, multi_label_metrics, regression_metrics, single_label_metrics

# ---- what the server says ------------------------------------------------------------------------


def request_body(examples: Sequence[Example], task: str) -> dict[str, Any]:
    if task == "sentence_pair":
        return {"inputs": [{"text": e.text, "text_pair": e.text_pair} for e in examples], "parameters": {"top_k": None}}
    if task == "token_classification":
        return {
            "inputs": [" ".join(e.tokens) for e in examples],
            "parameters": {"aggregation_strategy": "none", "ignore_labels": []},
        }
    if task == "multi_label":
        # The labels reaching their thresholds: the served decision.
        return {"inputs": [e.text for e in examples]}
    if task == "regression":
        inputs = [e.text if e.text_pair is None else {"text": e.text, "text_pair": e.text_pair} for e in examples]
        return {"inputs": inputs}
    # Every label's score, so the served probabilities can be checked for calibration.
    return {"inputs": [e.text for e in examples], "parameters": {"top_k": None}}


def word_tags(example: Example, tokens: list[dict[str, Any]]) -> list[str]:
    """Per word, the tag of the token that starts it (the first subword, as training scored it)."""
    by_start = {token["start"]: token["entity"] for token in tokens}
    tags, position = [], 0
    for word in example.tokens:
        tags.append(by_start.get(position, "O"))
        position += len(word) + 1
    return tags


def predictions_of(task: str, examples: Sequence[Example], answers: Sequence[Any]) -> list[Any]:
    """Per example, what its answer decides: word tags (tokens), sorted labels (multi-label), or
    every label's score (single-label and pairs: the first is the decision, all are the scores)."""
    if task == "token_classification":
        return [word_tags(example, answer) for example, answer in zip(examples, answers)]
    if task == "multi_label":
        return [sorted(item["label"] for item in answer) for answer in answers]
    if task == "regression":
        return [answer["score"] for answer in answers]
    return [{item["label"]: item["score"] for item in answer} for answer in answers]


def served_predictions(
    url: str, token: str | None, examples: list[Example], task: str, batch_size: int, concurrency: int
) -> list[Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]

    def send(batch: list[Example]) -> list[Any]:
        response = requests.post(url, data=json.dumps(request_body(batch, task)), headers=headers, timeout=300)
        if response.status_code != 200:
            raise DataError(f"{url} answered {response.status_code}: {response.text[:300]}")
        return predictions_of(task, batch, response.json())

    with ThreadPoolExecutor(concurrency) as pool:
        return [prediction for batch in pool.map(send, batches) for prediction in batch]


# ---- what the model folder says, computed here by the handler's own runner ----------------------


def folder_runner(model_dir: Path) -> Any:
    """The runner the handler builds from ``model_dir`` and its model-config.yaml, on the CPU."""
    from handler.api.settings import HandlerSettings
    from handler.registry import build_runner

    config_path = model_dir / "model-config.yaml"
    serving = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    settings = HandlerSettings.from_mapping((serving or {}).get("handler"))
    return build_runner(model_dir, settings, torch.device("cpu"))


def local_predictions(model_dir: Path, examples: list[Example], task: str, batch_size: int = 32) -> list[Any]:
    """The model folder's predictions as the handler computes them in-process (no server): the
    same requests as ``served_predictions`` sends, parsed and run by the same runner."""
    runner = folder_runner(model_dir)
    predictions: list[Any] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        body = request_body(batch, task)
        parsed = runner.parse(RequestBody(body["inputs"], body.get("parameters"), is_json=True))
        [outcome] = runner.run([parsed]).outcomes
        if outcome.error is not None:
            raise DataError(f"{model_dir}: in-process answer failed: {outcome.error.message}")
        predictions.extend(predictions_of(task, batch, outcome.payload))
    return predictions


def model_labels(model_dir: Path) -> list[str]:
    """Label names as the handler serves them: index_to_name.json, else the config's id2label."""
    config = load_config(model_dir)
    mapping = model_dir / MAPPING_FILE_NAME
    return list(resolve_labels(mapping, config.id2label, config.num_labels, logging.getLogger("evaluate")))


def metrics_for(task: str, examples: list[Example], predictions: list[Any], labels: list[str]) -> dict[str, Any]:
    if task == "regression":
        return regression_metrics([e.score for e in examples], predictions)
    if task == "token_classification":
        return entity_metrics([list(e.tags) for e in examples], predictions)
    if task == "multi_label":
        index = {name: i for i, name in enumerate(labels)}
        truth = np.zeros((len(examples), len(labels)), dtype=int)
        predicted = np.zeros_like(truth)
        for row, (example, chosen) in enumerate(zip(examples, predictions)):
            truth[row, [index[name] for name in example.labels if name in index]] = 1
            predicted[row, [index[name] for name in chosen if name in index]] = 1
        return multi_label_metrics(truth, predicted, labels)
    index = {name: i for i, name in enumerate(labels)}
    return single_label_metrics([index[e.label] for e in examples], [index.get(p, -1) for p in predictions], labels)


def names_served(task: str, served: list[Any]) -> set[str]:
    """Every label name the served answers use."""
    if task in ("single_label", "sentence_pair"):
        return {label for scores in served for label in scores}
    if task == "multi_label":
        return {label for labels in served for label in labels}
    if task == "token_classification":
        return {tag for tags in served for tag in tags}
    return set()


def to_folder_names(task: str, served: list[Any], renames: dict[str, str]) -> list[Any]:
    """Served answers with the archive's label names replaced by the model folder's (by index)."""
    if not renames:
        return served
    if task in ("single_label", "sentence_pair"):
        return [{renames.get(label, label): score for label, score in scores.items()} for scores in served]
    if task == "multi_label":
        return [sorted(renames.get(label, label) for label in labels) for labels in served]
    if task == "token_classification":
        return [[renames.get(tag, tag) for tag in tags] for tags in served]
    return served


def check_served_names(task: str, served: list[Any], labels: list[str]) -> None:
    """A metric is computed only over names the model folder knows; otherwise say what to pass."""
    unknown = sorted(names_served(task, served) - set(labels) - {"O"})
    if unknown:
        raise DataError(
            f"the server answers label(s) {unknown} that the model folder does not have ({labels}); "
            "the archive was made with another mapping: pass it with --mapping FILE (its index_to_name.json)"
        )


def served_labels(task: str, served: list[Any]) -> list[Any]:
    """The served decision of each example (single-label answers come as every label's score)."""
    if task in ("single_label", "sentence_pair"):
        return [max(scores, key=scores.get) for scores in served]
    return served


def served_calibration(served: list[dict[str, float]], examples: list[Example], labels: list[str]) -> dict[str, Any]:
    """ECE, NLL and Brier of the served probabilities, and the reliability diagram's bins."""
    probabilities = np.array([[scores[label] for label in labels] for scores in served])
    index = {label: i for i, label in enumerate(labels)}
    truth = np.array([index[example.label] for example in examples])
    return {**calibration_metrics(probabilities, truth), "reliability": reliability(probabilities, truth)}


# ---- the guarantees, as realised on the labelled file --------------------------------------------


def folder_settings(model_dir: Path) -> Any:
    from handler.api.settings import HandlerSettings

    config_path = model_dir / "model-config.yaml"
    serving = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    return HandlerSettings.from_mapping((serving or {}).get("handler"))


def realised_guarantees(
    served: list[dict[str, float]], examples: list[Example], labels: list[str], settings: Any, curve_points: int = 50
) -> dict[str, Any]:
    """From served single-label scores: the risk-coverage curve (error among the answered against
    the share answered, the most confident first), the error and share answered at the model's
    abstention threshold, and each fitted coverage level's realised coverage and mean set size."""
    from handler.postprocess.conformal import prediction_set, risk_coverage

    probabilities = np.array([[scores[label] for label in labels] for scores in served])
    index = {label: i for i, label in enumerate(labels)}
    truth = np.array([index[example.label] for example in examples])
    top, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    curve = risk_coverage(top, correct)
    step = max(1, len(curve) // curve_points)
    found: dict[str, Any] = {
        "risk_coverage": [
            {"threshold": round(t, 6), "answered": round(a, 6), "error": round(e, 6)} for t, a, e in curve[::step]
        ]
        + [{"threshold": round(curve[-1][0], 6), "answered": 1.0, "error": round(curve[-1][2], 6)}],
    }
    if settings.abstention is not None:
        kept = top >= settings.abstention.threshold
        found["abstention"] = {
            "threshold": settings.abstention.threshold,
            "max_error": settings.abstention.max_error,
            "answered": round(float(kept.mean()), 6),
            "error_answered": round(float((~correct[kept]).mean()), 6) if kept.any() else None,
            "error_all": round(float((~correct).mean()), 6),
        }
    if settings.conformal is not None:
        levels = {}
        for level, threshold in sorted(settings.conformal.thresholds.items()):
            if isinstance(threshold, Mapping):
                threshold = np.array([threshold[label] for label in labels])
            sets = [prediction_set(settings.conformal.method, row, threshold) for row in probabilities]
            levels[f"{level:g}"] = {
                "coverage": round(float(np.mean([t in s for t, s in zip(truth, sets)])), 6),
                "mean_size": round(float(np.mean([len(s) for s in sets])), 4),
                "singletons": round(float(np.mean([len(s) == 1 for s in sets])), 6),
            }
        found["prediction_sets"] = {"method": settings.conformal.method.value, "levels": levels}
    return found
