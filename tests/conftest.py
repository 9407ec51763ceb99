"""Tiny models, built once per test session into a temporary folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# transformers' progress bars and advice would drown pytest's output.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
logging.getLogger("transformers").setLevel(logging.ERROR)

from tiny_models import (  # noqa: E402
    build_causal_lm,
    build_keyword_question_answerer,
    build_keyword_token_classifier,
    build_question_answerer,
    build_sequence_classifier,
    build_token_classifier,
)

SENTIMENT_LABELS = ("negative", "neutral", "positive")
TOPIC_LABELS = ("billing", "bug", "feature_request", "praise")
NLI_LABELS = ("entailment", "neutral", "contradiction")
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
KEYWORD_ENTITIES = {"alice": "B-PER", "johnson": "I-PER", "paris": "B-LOC", "berlin": "B-LOC"}


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def sentiment_model(models_root: Path) -> Path:
    return build_sequence_classifier(models_root / "sentiment", SENTIMENT_LABELS, seed=1)


@pytest.fixture(scope="session")
def unnamed_sentiment_model(models_root: Path) -> Path:
    """The same kind of model with only LABEL_i names, to be named by a mapping file."""
    return build_sequence_classifier(models_root / "unnamed", SENTIMENT_LABELS, default_label_names=True, seed=2)


@pytest.fixture(scope="session")
def topics_model(models_root: Path) -> Path:
    return build_sequence_classifier(
        models_root / "topics", TOPIC_LABELS, problem_type="multi_label_classification", seed=3
    )


@pytest.fixture(scope="session")
def nli_model(models_root: Path) -> Path:
    return build_sequence_classifier(models_root / "nli", NLI_LABELS, seed=4)


@pytest.fixture(scope="session")
def one_label_model(models_root: Path) -> Path:
    return build_sequence_classifier(models_root / "one_label", ("toxic",), seed=5)


@pytest.fixture(scope="session")
def ner_model(models_root: Path) -> Path:
    return build_token_classifier(models_root / "ner", NER_LABELS, seed=6, model_max_length=24)


@pytest.fixture(scope="session")
def keyword_ner_model(models_root: Path) -> Path:
    return build_keyword_token_classifier(models_root / "keyword_ner", KEYWORD_ENTITIES, model_max_length=24)


@pytest.fixture(scope="session")
def qa_model(models_root: Path) -> Path:
    return build_question_answerer(models_root / "qa", seed=7, model_max_length=128)


@pytest.fixture(scope="session")
def keyword_qa_model(models_root: Path) -> Path:
    return build_keyword_question_answerer(models_root / "keyword_qa", "marie", "curie", model_max_length=32)


@pytest.fixture(scope="session")
def lm_model(models_root: Path) -> Path:
    return build_causal_lm(models_root / "lm", seed=8, n_positions=128)
