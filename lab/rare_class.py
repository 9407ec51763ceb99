"""A rare class that can be learned, at controlled ratios, and every way of treating it measured.

VADER's movie neutral class (a mean rating within +-0.2) is label noise more than a class: nothing
recalls it, so it cannot say which imbalance strategy works. Here the two majority classes are
movie sentences rated negative and positive, and the rare class is NYT editorial sentences
("news"): a class a model can learn, kept at 1 per RATIO majority examples of each class in
training and validation, and held out 200 strong in the test set so its recall can be measured.

Each (ratio, seed) trains MiniLM plainly, with inverse class weights, with focal loss and oversampled
(lab/commands/rare_class.py, TRAININGS); every other strategy is a decision rule on a trained
model's logits, so it needs no training of its own:

- ``argmax``: the model's own decision;
- ``served``: what ``hflabels train`` serves (its calibration, prior correction included);
- ``post-hoc logit adjustment``: argmax of logits - log(training prior) (Menon et al. 2021);
- ``tuned bias``: one additive bias on the rare logit, chosen on validation for macro-F1.

Metrics on the test set as it is (200 rare, 300 of each majority class) and at the training
prior (the confusion matrix's rows reweighted to the training proportions: the precision a rare
class has when it is rare in traffic too).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import numpy as np

from hflabels.vader_data import read_corpora

MAJORITY = ("negative", "positive")
RARE = "news"
LABELS = (*MAJORITY, RARE)
TEST_COUNTS = {"negative": 300, "positive": 300, RARE: 200}


def rare_class_splits(sdist: Path, majority: int, ratio: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """train / validation / test (text, label) rows: ``majority`` movie sentences per majority
    class (a fifth of them for validation), the rare class at 1 per ``ratio`` of each (at least 2
    in validation), and a test set of TEST_COUNTS; disjoint, seeded."""
    corpora = read_corpora(sdist, ["movies", "nyt"])
    rng = random.Random(seed)
    pools = {
        label: [s.text for s in corpora["movies"] if s.label == label] for label in MAJORITY
    } | {RARE: [s.text for s in corpora["nyt"]]}
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
    for label, pool in pools.items():
        pool = list(dict.fromkeys(pool))
        rng.shuffle(pool)
        test, rest = pool[: TEST_COUNTS[label]], pool[TEST_COUNTS[label] :]
        wanted = majority if label != RARE else max(3, round(majority / ratio))
        held = max(2, round(wanted / 5))
        splits["test"] += [(text, label) for text in test]
        splits["validation"] += [(text, label) for text in rest[:held]]
        splits["train"] += [(text, label) for text in rest[held:wanted]]
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def model_logits(folder: Path, texts: list[str], batch: int = 64) -> np.ndarray:
    """The trained folder's logits (float32, as served) for ``texts``, in label order LABELS."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    order = [model.config.label2id[label] for label in LABELS]
    found = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            encoded = tokenizer(texts[start : start + batch], padding=True, truncation=True, max_length=128,
                                return_tensors="pt")  # fmt: skip
            found.append(model(**encoded).logits.float().numpy()[:, order])
    return np.concatenate(found)


def confusion(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    matrix = np.zeros((len(LABELS), len(LABELS)))
    np.add.at(matrix, (truth, predicted), 1.0)
    return matrix


def scores_of(matrix: np.ndarray, row_weights: np.ndarray | None = None) -> dict[str, float]:
    """Macro-F1, balanced accuracy, rare recall / precision / F1 of a confusion matrix whose rows
    (true classes) are rescaled to ``row_weights`` shares when given."""
    if row_weights is not None:
        matrix = matrix / matrix.sum(axis=1, keepdims=True) * np.asarray(row_weights)[:, None]
    recall = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1e-12)
    precision = np.diag(matrix) / np.maximum(matrix.sum(axis=0), 1e-12)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    rare = LABELS.index(RARE)
    return {
        "macro_f1": float(f1.mean()),
        "balanced_accuracy": float(recall.mean()),
        "rare_recall": float(recall[rare]),
        "rare_precision": float(precision[rare]),
        "rare_f1": float(f1[rare]),
    }


def tuned_rare_bias(logits: np.ndarray, truth: np.ndarray) -> float:
    """The additive bias on the rare logit that maximises validation macro-F1 (the smallest
    magnitude among ties)."""
    rare = LABELS.index(RARE)
    best, chosen = -1.0, 0.0
    for bias in sorted(np.linspace(-2.0, 10.0, 121), key=abs):
        shifted = logits.copy()
        shifted[:, rare] += bias
        found = scores_of(confusion(truth, shifted.argmax(axis=1)))["macro_f1"]
        if found > best + 1e-12:
            best, chosen = found, float(bias)
    return chosen


def decision_rules(
    validation: tuple[np.ndarray, np.ndarray], test_logits: np.ndarray, train_prior: np.ndarray,
    served_adjustment: np.ndarray, loss_weights: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per rule, its test decisions (``loss_weights``: the training's class weights, ones if none)."""
    rare = LABELS.index(RARE)
    bias = tuned_rare_bias(*validation)
    tuned = test_logits.copy()
    tuned[:, rare] += bias
    return {
        "argmax": test_logits.argmax(axis=1),
        "served": (test_logits - served_adjustment).argmax(axis=1),
        # What hflabels train served before: the class weights' log divided out.
        "weights undone": (test_logits - np.log(loss_weights)).argmax(axis=1),
        "post-hoc logit adjustment": (test_logits - np.log(train_prior)).argmax(axis=1),
        "tuned bias": tuned.argmax(axis=1),
    }


def evaluate_rules(rules: dict[str, np.ndarray], truth: np.ndarray, train_prior: np.ndarray) -> dict[str, Any]:
    return {
        name: {"test": scores_of(confusion(truth, predicted)),
               "at_training_prior": scores_of(confusion(truth, predicted), train_prior)}
        for name, predicted in rules.items()
    }  # fmt: skip
