"""Tiny models, built once per test session into a temporary folder."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Load-time timings are taken one worker at a time under a lock in this folder; tests do not
# remember them (a remembered timing would hide the measurement a test patches): their own tests
# turn remembering on (tests/handler/test_load_measurements.py).
os.environ.setdefault("HFLABELS_CACHE_DIR", tempfile.mkdtemp(prefix="hflabels-test-cache-"))
os.environ.setdefault("HFLABELS_LOAD_CACHE", "0")
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

from hflabels.paths import LOG_CONFIG, TORCHSERVE_CONFIG  # noqa: E402

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


# ---- a real torchserve for the end-to-end tests ---------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
CONLL_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
FAST_BATCHING = {"batchSize": 8, "maxBatchDelay": 20, "minWorkers": 1, "maxWorkers": 1, "maxRetryTimeoutInSec": 10}
SLOW_FULL_BATCHES = {**FAST_BATCHING, "batchSize": 4, "maxBatchDelay": 3000}


@pytest.fixture(scope="session")
def conll_ner_model(models_root: Path) -> Path:
    """A token classifier without label names of its own: mappings/ner_conll.json names them."""
    from tiny_models import build_token_classifier as build

    folder = build(models_root / "conll_ner", CONLL_LABELS, seed=9, model_max_length=32)
    import json

    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(CONLL_LABELS))}
    config["label2id"] = {f"LABEL_{i}": i for i in range(len(CONLL_LABELS))}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@dataclass(frozen=True)
class ServedModel:
    name: str
    model_dir: Path
    handler: dict
    frontend: dict
    mapping: Path | None = None
    label_sets: tuple[tuple[str, Path], ...] = ()


def served_models(request: pytest.FixtureRequest) -> list[ServedModel]:
    fixture = request.getfixturevalue
    mappings = REPO_ROOT / "mappings"
    return [
        ServedModel("sentiment", fixture("sentiment_model"), {}, FAST_BATCHING, label_sets=(
            ("de", mappings / "sentiment_3way.de.json"), ("fr", mappings / "sentiment_3way.fr.json"))),
        # Four concurrent requests fill a batch of four at once; a lone one would wait 3 s.
        ServedModel("batched", fixture("sentiment_model"), {}, SLOW_FULL_BATCHES),
        ServedModel("topics", fixture("topics_model"), {"label_thresholds": {"praise": 0.0}}, FAST_BATCHING,
                    mappings / "topics_multilabel.json"),
        ServedModel("nli", fixture("nli_model"), {}, FAST_BATCHING, mappings / "nli.json"),
        ServedModel("zeroshot", fixture("nli_model"), {"task": "zero_shot_classification"}, FAST_BATCHING,
                    mappings / "nli.json"),
        ServedModel("ner", fixture("conll_ner_model"), {"stride": 8}, FAST_BATCHING, mappings / "ner_conll.json"),
        ServedModel("keyword_ner", fixture("keyword_ner_model"), {"stride": 4}, FAST_BATCHING),
        ServedModel("qa", fixture("qa_model"), {}, FAST_BATCHING),
        ServedModel("keyword_qa", fixture("keyword_qa_model"), {}, FAST_BATCHING),
        ServedModel("lm", fixture("lm_model"), {"max_new_tokens_limit": 64}, FAST_BATCHING),
        ServedModel("cached", fixture("sentiment_model"), {"cache_size_mb": 4}, FAST_BATCHING),
        # Its worker is killed by a test; no other test uses it.
        ServedModel("crashy", fixture("sentiment_model"), {}, FAST_BATCHING),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def torchserve(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One torchserve serving every test model, archived with hflabels archive."""
    import yaml
    from support import exact_precision, script

    from hflabels.torchserve_config import config_with_free_ports
    from hflabels.torchserve_control import start, stop

    archive_main = script("archive")

    root = tmp_path_factory.mktemp("torchserve")
    store = root / "model_store"
    models = served_models(request)
    for model in models:
        config = root / f"{model.name}-config.yaml"
        config.write_text(yaml.safe_dump({**model.frontend, "handler": exact_precision(model.handler)}))
        argv = [str(model.model_dir), "--name", model.name, "--config", str(config), "--export-path", str(store)]
        if model.mapping is not None:
            argv += ["--mapping", str(model.mapping)]
        for label_set, path in model.label_sets:
            argv += ["--mapping", f"{label_set}={path}"]
        assert archive_main(argv) == 0, f"archiving {model.name} failed"
    properties = config_with_free_ports(TORCHSERVE_CONFIG, root / "config.properties")
    # Started as a user would, from a folder holding config.properties and log4j2.xml as the
    # project root does: the shipped config's vmargs choose the logging (no --log-config).
    run_dir = root / "run"
    run_dir.mkdir()
    shutil.copy(LOG_CONFIG, run_dir / "log4j2.xml")
    server = start(properties, store, [f"{m.name}={m.name}.mar" for m in models], run_dir, timeout=600, log_config=None)
    server.models = {model.name: model for model in models}  # type: ignore[attr-defined]
    yield server
    stop(root / "run")


@pytest.fixture(scope="session")
def trained(tmp_path_factory, models_root):
    """Each task trained for one quick epoch on a tiny random encoder."""
    from support import script
    from tiny_models import build_base_encoder
    from training_datasets import MULTI, PAIRS, SINGLE, TOKENS

    root = tmp_path_factory.mktemp("trained")
    base = build_base_encoder(models_root / "base_encoder")
    datasets = {
        "single_label": ("single.csv", SINGLE, ["--class-weights", "inverse"]),
        "sentence_pair": ("pairs.csv", PAIRS, []),
        "multi_label": ("multi.jsonl", MULTI, ["--class-weights", "sqrt_inverse"]),
        "token_classification": ("tokens.jsonl", TOKENS, ["--label-all-subwords", "--class-weights", "effective"]),
    }
    outputs = {}
    for task, (name, content, extra) in datasets.items():
        data = root / name
        data.write_text(content, encoding="utf-8")
        output = root / task
        argv = ["--task", task, "--train", str(data), "--output", str(output), "--base-model", str(base),
                "--epochs", "1", "--batch-size", "4", "--validation-fraction", "0.25"] + extra  # fmt: skip
        assert script("train")(argv) == 0, f"training {task} failed"
        outputs[task] = output
    return outputs


@pytest.fixture(scope="session")
def qa_reference(qa_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The QA parity cases and transformers 4.x's own answers to them (tests/pipeline_oracle.py)."""
    from qa_cases import cases, oracle_answers

    job_cases = cases()
    return job_cases, oracle_answers(qa_model, job_cases, tmp_path_factory.mktemp("qa-oracle"))
