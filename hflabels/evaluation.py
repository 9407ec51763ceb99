"""Check a served model against a labelled file, and against the model folder it was built from.

The served predictions come from the endpoint, in batches from several concurrent clients; the
reference predictions from the same model folder computed in-process with plain transformers (no
handler code); the metrics are the ones training reports.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch
import yaml

from handler.api.labels import MAPPING_FILE_NAME, resolve_labels
from handler.engine.model_loading import load_config
from hflabels.calibration import calibration_metrics, reliability
from hflabels.training_data import DataError, Example
from hflabels.training_math import entity_metrics, multi_label_metrics, single_label_metrics

# ---- what the server says ------------------------------------------------------------------------


def request_body(examples: Sequence[Example], task: str) -> dict[str, Any]:
    if task == "sentence_pair":
        return {"inputs": [{"text": e.text, "text_pair": e.text_pair} for e in examples], "parameters": {"top_k": None}}
    if task == "token_classification":
        return {
            "inputs": [" ".join(e.tokens) for e in examples],
            "parameters": {"aggregation_strategy": "none", "ignore_labels": []},
        }
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


def served_predictions(
    url: str, token: str | None, examples: list[Example], task: str, batch_size: int, concurrency: int
) -> list[Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]

    def send(batch: list[Example]) -> list[Any]:
        response = requests.post(url, data=json.dumps(request_body(batch, task)), headers=headers, timeout=300)
        if response.status_code != 200:
            raise DataError(f"{url} answered {response.status_code}: {response.text[:300]}")
        answers = response.json()
        if task == "token_classification":
            return [word_tags(example, answer) for example, answer in zip(batch, answers)]
        if task == "multi_label":
            return [sorted(item["label"] for item in answer) for answer in answers]
        # Ranked: the first is the served label; all of them are the served probabilities.
        return [{item["label"]: item["score"] for item in answer} for answer in answers]

    with ThreadPoolExecutor(concurrency) as pool:
        return [prediction for batch in pool.map(send, batches) for prediction in batch]


# ---- what the model folder says, computed here with plain transformers ------------------------


def local_predictions(model_dir: Path, examples: list[Example], task: str) -> list[Any]:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    serving = (
        yaml.safe_load((model_dir / "model-config.yaml").read_text())
        if (model_dir / "model-config.yaml").exists()
        else {}
    )
    handler = (serving or {}).get("handler") or {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    max_length = min(int(handler.get("max_length", 512)), tokenizer.model_max_length)
    model_class = (
        AutoModelForTokenClassification if task == "token_classification" else AutoModelForSequenceClassification
    )
    model = model_class.from_pretrained(model_dir, local_files_only=True).eval()
    labels = model_labels(model_dir)
    predictions: list[Any] = []
    for start in range(0, len(examples), 32):
        batch = examples[start : start + 32]
        with torch.inference_mode():
            if task == "token_classification":
                encoding = tokenizer(
                    [list(e.tokens) for e in batch],
                    is_split_into_words=True,
                    truncation=True,
                    max_length=max_length,
                    padding=True,
                    return_tensors="pt",
                )
                logits = model(**encoding).logits.numpy()
                for row, example in enumerate(batch):
                    tags, previous = {}, None
                    for position, word in enumerate(encoding.word_ids(row)):
                        if word is not None and word != previous:
                            tags[word] = labels[int(logits[row, position].argmax())]
                        previous = word
                    predictions.append([tags.get(i, "O") for i in range(len(example.tokens))])
                continue
            pairs = [e.text_pair for e in batch] if task == "sentence_pair" else None
            encoding = tokenizer(
                [e.text for e in batch],
                pairs,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**encoding).logits.float().numpy()
        logits = calibrated(logits, handler.get("calibration"), labels)
        if task == "multi_label":
            thresholds = handler.get("label_thresholds") or {}
            scores = 1.0 / (1.0 + np.exp(-logits))
            for row in scores:
                predictions.append(
                    sorted(label for label, score in zip(labels, row) if score >= thresholds.get(label, 0.5))
                )
        else:
            predictions.extend(labels[int(index)] for index in logits.argmax(axis=-1))
    return predictions


def calibrated(logits: np.ndarray, calibration: dict[str, Any] | None, labels: list[str]) -> np.ndarray:
    """``(logits - adjustment) / temperature`` as model-config.yaml's handler.calibration says."""
    if not calibration:
        return logits
    adjustment = np.array([calibration.get("logit_adjustment", {}).get(label, 0.0) for label in labels])
    temperature = calibration.get("temperature", 1.0)
    if isinstance(temperature, dict):
        temperature = np.array([temperature.get(label, 1.0) for label in labels])
    return (logits - adjustment) / temperature


def model_labels(model_dir: Path) -> list[str]:
    """Label names as the handler serves them: index_to_name.json, else the config's id2label."""
    config = load_config(model_dir)
    mapping = model_dir / MAPPING_FILE_NAME
    return list(resolve_labels(mapping, config.id2label, config.num_labels, logging.getLogger("evaluate")))


def metrics_for(task: str, examples: list[Example], predictions: list[Any], labels: list[str]) -> dict[str, Any]:
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
