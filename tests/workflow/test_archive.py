"""hflabels archive: what it refuses (one line, exit 2) and what it puts in a .mar."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import yaml
from support import script

archive_main = script("archive")


def archive(model_dir, tmp_path, *extra):
    return archive_main([str(model_dir), "--name", "model", "--export-path", str(tmp_path / "store"), *extra])


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture
def model_copy(sentiment_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(sentiment_model, folder)
    return folder


def test_archive_holds_the_handler_package_serving_files_and_the_task(model_copy, tmp_path):
    (model_copy / "training_args.bin").write_bytes(b"pickled training state")
    (model_copy / "checkpoint-10").mkdir()
    (model_copy / "model-config.yaml").write_text(yaml.safe_dump({"batchSize": 3, "handler": {"max_length": 32}}))
    (model_copy / "index_to_name.json").write_text(json.dumps({"0": "neg", "1": "neu", "2": "pos"}))
    assert archive(model_copy, tmp_path) == 0
    with zipfile.ZipFile(tmp_path / "store" / "model.mar") as mar:
        names = set(mar.namelist())
        config = yaml.safe_load(mar.read("model-config.yaml"))
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        mapping = json.loads(mar.read("index_to_name.json"))
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "index_to_name.json",
        "torchserve_handler.py",
    } <= names
    assert {
        "handler/__init__.py",
        "handler/registry.py",
        "handler/api/__init__.py",
        "handler/api/labels.py",
        "handler/postprocess/scoring.py",
        "handler/engine/runner.py",
        "handler/tasks/sequence_classification.py",
        "handler/serving/responses.py",
    } <= names
    assert not any(name.startswith(("training_args", "checkpoint")) or name.endswith(".pyc") for name in names)
    assert config == {"batchSize": 3, "handler": {"max_length": 32, "task": "sequence_classification"}}
    assert manifest["model"]["handler"] == "torchserve_handler.py"
    assert mapping == {"0": "neg", "1": "neu", "2": "pos"}


def test_task_flag_overrides_the_config(model_copy, tmp_path, capsys):
    assert archive(model_copy, tmp_path, "--task", "token_classification") == 2
    assert (
        "declares BertForSequenceClassification (sequence_classification) but the task is token_classification"
        in error_line(capsys)
    )


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "model.safetensors").unlink(), "no model weights (expected model.safetensors)"),
        (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer files"),
        (lambda d: (d / "config.json").unlink(), "no config.json"),
        (lambda d: (d / "config.json").write_text("{broken"), "config.json cannot be read"),
        (lambda d: (d / "index_to_name.json").write_text('{"0": "a"}'), "has 1 labels but the model has num_labels=3"),
        (lambda d: (d / "index_to_name.json").write_text(""), "index_to_name.json: not valid JSON"),
        (lambda d: (d / "index_to_name.json").write_text("{}"), "index_to_name.json: the mapping is empty"),
        (lambda d: (d / "index_to_name.json").write_text('{"0": "a", "1": "a", "2": "b"}'), "duplicate label 'a'"),
        (lambda d: (d / "model-config.yaml").write_text("handler:\n  max_len: 3\n"), "unknown key(s) max_len"),
    ],
)
def test_broken_folders_are_refused_with_one_line(model_copy, tmp_path, capsys, breakage, message):
    breakage(model_copy)
    assert archive(model_copy, tmp_path) == 2
    line = error_line(capsys)
    assert line.startswith("archive.py: error: ") and message in line
    assert not (tmp_path / "store" / "model.mar").exists()


def test_a_malformed_label_list_is_refused(ner_model, tmp_path, capsys):
    mapping = tmp_path / "labels.json"
    mapping.write_text('{"label_list": "[O, B-PER, \'I-PER]"}')
    assert archive(ner_model, tmp_path, "--mapping", str(mapping)) == 2
    assert "labels.json: label_list is malformed: unbalanced quote" in error_line(capsys)


@pytest.mark.parametrize(
    ("name", "message"),
    [("token_tagger", "names starting with 'token' break TorchServe 0.12"), ("my model", "use letters, digits")],
)
def test_unsafe_model_names_are_refused(sentiment_model, tmp_path, capsys, name, message):
    assert archive_main([str(sentiment_model), "--name", name, "--export-path", str(tmp_path)]) == 2
    assert message in error_line(capsys)


def test_a_mapping_given_for_default_label_names_archives_them_without_the_no_mapping_warning(
    unnamed_sentiment_model, tmp_path, caplog, capsys
):
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({"0": "negative", "1": "neutral", "2": "positive"}))
    with caplog.at_level("WARNING"):
        assert archive(unnamed_sentiment_model, tmp_path, "--mapping", str(mapping)) == 0
    assert "no index_to_name.json" not in caplog.text + capsys.readouterr().err
    with zipfile.ZipFile(tmp_path / "store" / "model.mar") as mar:
        assert json.loads(mar.read("index_to_name.json")) == {"0": "negative", "1": "neutral", "2": "positive"}
    # Without a mapping the warning is still given: the names served would be LABEL_0...
    with caplog.at_level("WARNING"):
        assert archive(unnamed_sentiment_model, tmp_path) == 0
    assert "no index_to_name.json" in caplog.text


def test_the_sample_request_serve_prints_is_the_archives_own_probe_text(model_copy, tmp_path):
    from hflabels.sample_request import PLACEHOLDER, sample_body

    (model_copy / "probe.txt").write_text("\nA held-out review of this model's own data.\nanother\n")
    assert archive(model_copy, tmp_path) == 0
    assert sample_body(tmp_path / "store" / "model.mar") == {"inputs": "A held-out review of this model's own data."}
    assert sample_body(tmp_path / "missing.mar") == {"inputs": PLACEHOLDER}


def test_a_question_answering_archive_gets_a_question_and_its_probe_text_as_context(qa_model, tmp_path):
    from hflabels.sample_request import sample_body

    folder = tmp_path / "qa"
    shutil.copytree(qa_model, folder)
    (folder / "probe.txt").write_text("Marie Curie won the Nobel Prize.\n")
    assert archive(folder, tmp_path) == 0
    body = sample_body(tmp_path / "store" / "model.mar")
    assert body == {"inputs": {"question": "What is this about?", "context": "Marie Curie won the Nobel Prize."}}
