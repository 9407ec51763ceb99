"""Synthetic minority examples: written by a local LM (mechanics, with a tiny LM), admitted to
training only after deduplication and a label-consistency filter (with a classifier built to
reject), and never into validation or test."""

from __future__ import annotations

import csv
import json

import pytest
from support import script
from training_datasets import keyword_sentiment

from hflabels.training.data import DataError, Example, load_examples
from hflabels.training.synthetic import admit, folded, rare_labels


def test_duplicates_of_any_split_and_of_each_other_are_removed_before_the_filter():
    train = [Example(text="The room was  great", label="positive")]
    test = [Example(text="awful food", label="negative")]
    synthetic = [Example(text="the room was GREAT", label="positive"), Example(text="Awful food", label="negative"),
                 Example(text="a fine day", label="neutral"), Example(text="A fine  day", label="neutral"),
                 Example(text="so-so", label="neutral")]  # fmt: skip
    judged: list[str] = []

    def score(examples):
        judged.extend(example.text for example in examples)
        return [0.95 if "fine" in example.text else 0.2 for example in examples]

    admission = admit(synthetic, [train, [], test], score, 0.9)
    assert judged == ["a fine day", "so-so"], "only unique, unseen texts reach the filter"
    assert [example.text for example in admission.added] == ["a fine day"]
    assert admission.counts == {"given": 5, "duplicates_removed": 3, "rejected_by_filter": 1, "added": 1,
                                "added_per_label": {"neutral": 1}, "min_score": 0.9}  # fmt: skip
    assert folded("  A\tB  ") == "a b"


def test_rare_classes_are_those_under_half_the_largest_unless_named():
    examples = [Example(text=str(i), label=label) for i, label in enumerate(["a"] * 10 + ["b"] * 6 + ["c"] * 2)]
    assert rare_labels(examples, None) == ["c"]
    assert rare_labels(examples, ["b"]) == ["b"]
    with pytest.raises(DataError, match="--classes z not in the training data"):
        rare_labels(examples, ["z"])


def test_augment_writes_examples_of_the_rare_classes_with_a_local_lm(models_root, tmp_path, capsys):
    from tiny_models import build_causal_lm

    generator = build_causal_lm(models_root / "augment_lm")
    data = tmp_path / "train.csv"
    data.write_text(keyword_sentiment(60, seed=3))
    output = tmp_path / "synthetic.csv"
    argv = ["--generator", str(generator), "--train", str(data), "--output", str(output), "--classes", "neutral",
            "negative", "--per-class", "3", "--max-new-tokens", "12"]  # fmt: skip
    assert script("augment")(argv) == 0
    with output.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert rows and {row["label"] for row in rows} <= {"neutral", "negative"}
    assert all(row["text"].strip() and "\n" not in row["text"] for row in rows)
    assert "train with: hflabels train --synthetic" in capsys.readouterr().out


def test_train_adds_only_what_passes_and_only_to_the_training_split(models_root, tmp_path):
    """The filter is a classifier built to answer "positive" only for texts holding "wonderful":
    synthetic positives without the word are rejected, and no synthetic text reaches validation."""
    from tiny_models import build_base_encoder, build_keyword_sequence_classifier

    judge = build_keyword_sequence_classifier(models_root / "synthetic_judge", "wonderful")
    base = build_base_encoder(models_root / "synthetic_base", initializer_range=0.02)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text(keyword_sentiment(120, seed=1))
    (data / "validation.csv").write_text(keyword_sentiment(30, seed=2))
    real_train = load_examples(data / "train.csv", "single_label")
    synthetic = tmp_path / "synthetic.csv"
    rows = [("a wonderful wonderful staff", "positive"), ("the wonderful food arrived", "positive"),
            ("the package arrived on tuesday", "positive"), ("the staff in paris", "neutral"),
            (real_train[0].text, real_train[0].label)]  # fmt: skip
    synthetic.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    output = tmp_path / "model"
    argv = ["--task", "single_label", "--train", str(data / "train.csv"), "--validation", str(data / "validation.csv"),
            "--output", str(output), "--base-model", str(base), "--epochs", "1", "--synthetic", str(synthetic),
            "--synthetic-filter-model", str(judge), "--synthetic-min-score", "0.5"]  # fmt: skip
    assert script("train")(argv) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    counts = metrics["synthetic"]
    assert counts["given"] == 5 and counts["duplicates_removed"] == 1
    # The judge says positive only with "wonderful" (softmax > 0.5), neutral (0.58) otherwise.
    assert counts["added_per_label"] == {"positive": 2, "neutral": 1}, counts
    assert counts["rejected_by_filter"] == 1
    assert metrics["train_examples"] == len(real_train) + 3
    assert metrics["validation"]["examples"] == 30


def test_synthetic_examples_are_for_classification_only(tmp_path):
    from hflabels.training.trainer import TrainOptions, train

    data = tmp_path / "scores.csv"
    data.write_text("text,score\n" + "".join(f"t{i},{i}\n" for i in range(10)))
    with pytest.raises(DataError, match="--synthetic adds labelled examples for single_label and sentence_pair"):
        train(TrainOptions(task="regression", train=data, output=tmp_path / "o", synthetic=data, epochs=1))
