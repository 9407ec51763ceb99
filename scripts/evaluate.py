#!/usr/bin/env python3
"""Check a served model against a labelled file, and against the model folder it was built from.

    scripts/evaluate.py --url http://127.0.0.1:8080/predictions/sentiment --token-file .serve/key_file.json \
        --data data/sentiment/test.csv --task single_label --model-dir build/demo-model [--report FILE]

Sends the examples in batches from several concurrent clients, computes the same metrics as
scripts/train.py, and compares every served prediction with the prediction of the same model
folder computed here in-process with plain transformers (no handler code): any difference is
listed and the exit status is 1. A deployment that matches its training run exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch
import yaml
from training_data import TASKS, DataError, Example, load_examples

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training_math import entity_metrics, format_table, multi_label_metrics, single_label_metrics

from handler.api.labels import MAPPING_FILE_NAME, resolve_labels  # noqa: E402
from handler.engine.model_loading import load_config  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the /predictions/NAME URL")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", help="the inference bearer token")
    token.add_argument("--token-file", type=Path, help="TorchServe's key_file.json")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--model-dir", type=Path, required=True, help="the folder the served archive was built from")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--report", type=Path, help="write every example's truth and predictions as JSON")
    return parser.parse_args(argv)


# ---- what the server says ------------------------------------------------------------------------


def request_body(examples: Sequence[Example], task: str) -> dict[str, Any]:
    if task == "sentence_pair":
        return {"inputs": [{"text": e.text, "text_pair": e.text_pair} for e in examples]}
    if task == "token_classification":
        return {
            "inputs": [" ".join(e.tokens) for e in examples],
            "parameters": {"aggregation_strategy": "none", "ignore_labels": []},
        }
    return {"inputs": [e.text for e in examples]}


def word_tags(example: Example, tokens: list[dict[str, Any]]) -> list[str]:
    """Per word, the tag of the token that starts it (the first subword, as training scored it)."""
    by_start = {token["start"]: token["entity"] for token in tokens}
    tags, position = [], 0
    for word in example.tokens:
        tags.append(by_start.get(position, "O"))
        position += len(word) + 1
    return tags


def served_predictions(args: argparse.Namespace, examples: list[Example], token: str | None) -> list[Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    batches = [examples[i : i + args.batch_size] for i in range(0, len(examples), args.batch_size)]

    def send(batch: list[Example]) -> list[Any]:
        response = requests.post(
            args.url, data=json.dumps(request_body(batch, args.task)), headers=headers, timeout=300
        )
        if response.status_code != 200:
            raise DataError(f"{args.url} answered {response.status_code}: {response.text[:300]}")
        answers = response.json()
        if args.task == "token_classification":
            return [word_tags(example, answer) for example, answer in zip(batch, answers)]
        if args.task == "multi_label":
            return [sorted(item["label"] for item in answer) for answer in answers]
        return [answer["label"] for answer in answers]

    with ThreadPoolExecutor(args.concurrency) as pool:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        examples = load_examples(args.data, args.task)
        token = args.token
        if args.token_file is not None:
            token = json.loads(args.token_file.read_text())["inference"]["key"]
        served = served_predictions(args, examples, token)
        local = local_predictions(args.model_dir, examples, args.task)
    except (DataError, requests.RequestException, OSError, KeyError) as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    labels = model_labels(args.model_dir)
    metrics = metrics_for(args.task, examples, served, labels)
    print(f"served model on {args.data} ({len(examples)} examples):\n{format_table(metrics)}")
    mismatches = [{"line": e.line, "served": s, "in_process": p} for e, s, p in zip(examples, served, local) if s != p]
    if args.report is not None:
        truth = [
            list(e.tags) if args.task == "token_classification" else e.labels if args.task == "multi_label" else e.label
            for e in examples
        ]
        args.report.write_text(json.dumps({
            "task": args.task, "labels": labels, "metrics": metrics, "truth": truth,
            "served": served, "in_process": local, "mismatches": mismatches,
        }, indent=1) + "\n")  # fmt: skip
    if mismatches:
        print(f"\n{len(mismatches)} of {len(examples)} served predictions differ from the model folder's:")
        for mismatch in mismatches[:20]:
            print(
                f"  {args.data}:{mismatch['line']}: served {mismatch['served']} vs in-process {mismatch['in_process']}"
            )
        return 1
    print(f"\nall {len(examples)} served predictions equal the model folder's in-process predictions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
