"""Labelled examples from CSV or JSONL files, checked, with errors that name the file and line.

Columns by task:
- ``single_label``: ``text``, ``label``
- ``sentence_pair``: ``text``, ``text_pair``, ``label``
- ``multi_label``: ``text``, ``labels`` (a JSON list, or names separated by ``|``; may be empty)
- ``token_classification``: ``tokens``, ``tags`` (JSON lists, or whitespace-separated in CSV), BIO tags
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handler.api.tasks import Objective

TASKS = tuple(objective.value for objective in Objective)
REQUIRED_COLUMNS = {
    "single_label": ("text", "label"),
    "sentence_pair": ("text", "text_pair", "label"),
    "multi_label": ("text", "labels"),
    "token_classification": ("tokens", "tags"),
    "regression": ("text", "score"),
}


class DataError(Exception):
    """A problem in a data file, located as ``file:line: problem``."""


@dataclass(frozen=True)
class Example:
    text: str | None = None
    text_pair: str | None = None
    label: str | None = None
    labels: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    # Regression: the target value.
    score: float | None = None
    line: int = 0


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` pairs from a CSV (with a header) or JSONL file."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: each line must be a JSON object")
            rows.append((number, row))
        return rows
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        # Line numbers as an editor shows them: the header is line 1.
        return [(reader.line_num, dict(row)) for row in reader]
    raise DataError(f"{path}: unsupported file type {path.suffix!r} (use .csv or .jsonl)")


def load_examples(path: Path, task: str) -> list[Example]:
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no examples (only a header?)")
    missing = [column for column in REQUIRED_COLUMNS[task] if column not in rows[0][1]]
    if missing:
        raise DataError(f"{path}:{rows[0][0]}: missing column(s) {', '.join(missing)} for task {task}")
    return [_example(path, number, row, task) for number, row in rows]


def _example(path: Path, number: int, row: dict[str, Any], task: str) -> Example:
    where = f"{path}:{number}"
    if task == "token_classification":
        tokens = _sequence(row.get("tokens"), where, "tokens")
        tags = _sequence(row.get("tags"), where, "tags")
        if not tokens:
            raise DataError(f"{where}: tokens is empty")
        if len(tokens) != len(tags):
            raise DataError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
        for tag in tags:
            if tag != "O" and not (tag.startswith(("B-", "I-")) and len(tag) > 2):
                raise DataError(f"{where}: tag {tag!r} is not BIO (O, B-X or I-X)")
        return Example(tokens=tuple(tokens), tags=tuple(tags), line=number)
    text = _text(row.get("text"), where, "text")
    if task == "regression":
        pair = row.get("text_pair")
        pair = _text(pair, where, "text_pair") if pair not in (None, "") else None
        return Example(text=text, text_pair=pair, score=_number(row.get("score"), where), line=number)
    if task == "multi_label":
        return Example(text=text, labels=tuple(_labels(row.get("labels"), where)), line=number)
    pair = _text(row.get("text_pair"), where, "text_pair") if task == "sentence_pair" else None
    label = _text(row.get("label"), where, "label")
    return Example(text=text, text_pair=pair, label=label.strip(), line=number)


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: score must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise DataError(f"{where}: score must be finite, got {value!r}")
    return number


def _text(value: Any, where: str, column: str) -> str:
    if value is None:
        raise DataError(f"{where}: missing {column}")
    if not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: {column} must be text")
    value = str(value)
    if not value.strip():
        raise DataError(f"{where}: {column} is empty")
    return value


def _sequence(value: Any, where: str, column: str) -> list[str]:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                raise DataError(f"{where}: {column} is not a valid JSON list") from None
        else:
            value = stripped.split()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(f"{where}: {column} must be a list of strings")
    return value


def _labels(value: Any, where: str) -> list[str]:
    if value is None:
        raise DataError(f"{where}: missing labels")
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return _sequence(stripped, where, "labels")
        return [name.strip() for name in stripped.split("|") if name.strip()]
    return _sequence(value, where, "labels")


def label_names(examples: Sequence[Example], task: str) -> list[str]:
    """Sorted label names seen in the training data (stable across runs)."""
    if task == "regression":
        return ["score"]
    names: set[str] = set()
    for example in examples:
        if task == "token_classification":
            names.update(example.tags)
        elif task == "multi_label":
            names.update(example.labels)
        else:
            names.add(example.label or "")
    if task == "token_classification":
        # Every B-X gets its I-X (continuation subwords and multi-word entities need it even if
        # the data has none); O first, then each type's B- before its I-.
        names.update("I-" + tag[2:] for tag in list(names) if tag.startswith("B-"))
        return sorted(names, key=lambda tag: ("" if tag == "O" else tag[2:], tag[:1]))
    return sorted(names)


def check_known_labels(examples: Sequence[Example], known: Sequence[str], task: str, path: Path) -> None:
    """Every label of a held-out file must have been seen in training."""
    if task == "regression":
        return
    vocabulary = set(known)
    for example in examples:
        seen = (
            example.tags
            if task == "token_classification"
            else example.labels
            if task == "multi_label"
            else (example.label,)
        )
        unknown = sorted({name for name in seen if name not in vocabulary})
        if unknown:
            raise DataError(
                f"{path}:{example.line}: label(s) {', '.join(map(repr, unknown))} never appear in the training data"
            )


def split_held_out(
    examples: Sequence[Example], fraction: float, seed: int, task: str
) -> tuple[list[Example], list[Example]]:
    """A seeded split; single-label data is stratified so every class is in both parts when it can be."""
    rng = random.Random(seed)
    if task in ("single_label", "sentence_pair"):
        by_label: dict[str, list[Example]] = {}
        for example in examples:
            by_label.setdefault(example.label or "", []).append(example)
        train: list[Example] = []
        held: list[Example] = []
        for label in sorted(by_label):
            group = list(by_label[label])
            rng.shuffle(group)
            count = int(round(len(group) * fraction)) if len(group) > 1 else 0
            held.extend(group[:count])
            train.extend(group[count:])
        return train, held
    shuffled = list(examples)
    rng.shuffle(shuffled)
    count = max(1, int(round(len(shuffled) * fraction))) if len(shuffled) > 1 else 0
    return shuffled[count:], shuffled[:count]


SAMPLING = ("none", "oversample", "undersample")


def resample(examples: Sequence[Example], task: str, mode: str, seed: int) -> list[Example]:
    """Single-label (and sentence-pair) training data with balanced classes: every class drawn up to
    the largest class's count (oversample, with replacement) or down to the smallest's
    (undersample, without); seeded, in a shuffled order."""
    if mode == "none":
        return list(examples)
    if task not in ("single_label", "sentence_pair"):
        raise DataError(
            f"--sampling {mode} balances single-label classes; for {task} use --class-weights or --loss focal"
        )
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    target = (max if mode == "oversample" else min)(len(group) for group in by_label.values())
    balanced: list[Example] = []
    for label in sorted(by_label):
        group = by_label[label]
        if mode == "oversample":
            balanced += group + [rng.choice(group) for _ in range(target - len(group))]
        else:
            balanced += rng.sample(group, target)
    rng.shuffle(balanced)
    return balanced


def subsample(examples: list[Example], limit: int | None, seed: int, task: str) -> list[Example]:
    """At most ``limit`` examples, seeded and (single-label) stratified."""
    if limit is None or len(examples) <= limit:
        return examples
    kept, _ = split_held_out(examples, 1.0 - limit / len(examples), seed, task)
    return kept
