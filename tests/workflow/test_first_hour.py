"""What a new user meets in the first hour: renaming a trained model's labels, evaluating it under
the new names, serving an archive from a path, and a security section that is exactly true."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
import yaml
from support import call_one, load_handler, script

from hflabels.archiving import ArchiveError, archive, renamed_label_settings
from hflabels.paths import TORCHSERVE_CONFIG

REPO = Path(__file__).resolve().parents[2]


def test_renaming_moves_every_label_named_setting_in_both_spellings():
    handler = {
        "label_thresholds": {"bug": 0.3},
        "classification": {
            "calibration": {"temperature": {"bug": 2.0, "praise": 1.5}, "logit_adjustment": {"bug": 0.1}},
            "label_thresholds": {"praise": 0.4},
        },
    }
    renamed = renamed_label_settings(handler, {"bug": "BUG", "praise": "PRAISE"})
    assert renamed["label_thresholds"] == {"BUG": 0.3}
    assert renamed["classification"] == {
        "calibration": {"temperature": {"BUG": 2.0, "PRAISE": 1.5}, "logit_adjustment": {"BUG": 0.1}},
        "label_thresholds": {"PRAISE": 0.4},
    }
    assert handler["classification"]["label_thresholds"] == {"praise": 0.4}, "the input is left as it was"


def test_a_trained_folder_archived_under_new_names_serves_them_calibrated(trained, tmp_path):
    folder = trained["single_label"]
    mapping = tmp_path / "mine.json"
    mapping.write_text(json.dumps({"0": "NEG", "1": "NEU", "2": "POS"}))
    built = archive(folder, "renamed", mapping=mapping, export_path=tmp_path / "store")
    with zipfile.ZipFile(built.path) as mar:
        config = yaml.safe_load(mar.read("model-config.yaml"))["handler"]["classification"]["calibration"]
        assert set(config["logit_adjustment"]) == {"NEG", "NEU", "POS"}
        extracted = tmp_path / "extracted"
        mar.extractall(extracted)

    def handler_section(where: Path) -> dict:
        return yaml.safe_load((where / "model-config.yaml").read_text())["handler"]

    original, original_context = load_handler(folder, handler_section(folder))
    handler, context = load_handler(extracted, handler_section(extracted))
    body = {"inputs": "the staff were lovely", "parameters": {"top_k": None}}
    _, before = call_one(original, original_context, body)
    status, after = call_one(handler, context, body)
    to_new = {"negative": "NEG", "neutral": "NEU", "positive": "POS"}
    assert status == 200
    assert after == [{"label": to_new[item["label"]], "score": item["score"]} for item in before]


def test_a_setting_naming_a_label_the_archive_does_not_serve_fails_at_archive(trained, tmp_path):
    folder = trained["single_label"]
    document = yaml.safe_load((folder / "model-config.yaml").read_text())
    document["handler"]["classification"]["label_thresholds"] = {"angry": 0.5}
    with pytest.raises(ArchiveError, match=r"names label\(s\) \['angry'\] .* archive serves \['negative'"):
        archive(folder, "wrong", document=document, export_path=tmp_path)


def test_evaluate_says_what_to_pass_for_a_renamed_archive_instead_of_a_traceback(trained, tmp_path, capsys,
                                                                                  monkeypatch):  # fmt: skip
    from hflabels import evaluation

    folder = trained["single_label"]
    data = tmp_path / "data.csv"
    data.write_text("text,label\nthe staff were lovely,positive\nthe soup was cold,negative\n")
    names = {"negative": "NEG", "neutral": "NEU", "positive": "POS"}

    def served(url, token, examples, task, batch_size, concurrency):  # noqa: ANN001
        # What the renamed archive answers: the folder's own answers under the new names.
        answers = evaluation.local_predictions(folder, examples, task)
        return [{names[label]: score for label, score in answer.items()} for answer in answers]

    monkeypatch.setattr(evaluation, "served_predictions", served)  # the command imports it when it runs
    argv = ["--url", "http://x/predictions/renamed", "--data", str(data), "--task", "single_label",
            "--model-dir", str(folder)]  # fmt: skip
    assert script("evaluate")(argv) == 2
    captured = capsys.readouterr()
    assert "accuracy" not in captured.out and "Traceback" not in captured.err
    assert "pass it with --mapping FILE" in captured.err and "['NEG', 'NEU', 'POS']" in captured.err
    mapping = tmp_path / "mine.json"
    mapping.write_text(json.dumps({"0": "NEG", "1": "NEU", "2": "POS"}))
    assert script("evaluate")([*argv, "--mapping", str(mapping)]) == 0
    assert "all 2 served predictions equal the model folder's" in capsys.readouterr().out


def test_serve_start_takes_an_archive_by_path_into_the_store(tmp_path):
    from hflabels.commands.serve import store_spec
    from hflabels.torchserve_control import ServeError

    elsewhere = tmp_path / "out" / "reviews.mar"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"mar")
    store = tmp_path / "store"
    assert store_spec(f"reviews={elsewhere}", store) == "reviews=reviews.mar"
    assert (store / "reviews.mar").read_bytes() == b"mar"
    assert store_spec("reviews", store) == "reviews=reviews.mar"
    with pytest.raises(ServeError, match="does not exist; build it with: hflabels archive"):
        store_spec(f"other={tmp_path / 'nothing.mar'}", store)


def test_a_failed_start_shows_this_runs_log_lines_not_an_earlier_runs(tmp_path):
    from hflabels.torchserve_control import Server

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "model_log.log").write_text("W-9000-old_1.0-stdout MODEL_LOG - model load failed: an old failure\n")
    (logs / "ts_log.log").write_text("Model not found at: /an/old/path.mar\n")
    server = Server(tmp_path, "http://i", "http://m", "http://x")
    server.mark_logs()
    assert server.load_failures() == {} and server.registration_failures() == [] and server.log_tail() == ""
    with (logs / "ts_log.log").open("a") as stream:
        stream.write("2026 ERROR Model not found at: /work/new.mar\n")
    assert server.registration_failures() == ["Model not found at: /work/new.mar"]
    # A model whose workers die twice is a refusal, unless it is not among the models waited for
    # (a broken one started beside them must not fail their start).
    with (logs / "ts_log.log").open("a") as stream:
        stream.write("Load model failed: broken, error: Worker died.\n" * 2)
    deaths = [line for line in server.registration_failures() if line.startswith("broken:")]
    assert len(deaths) == 1 and deaths[0].startswith("broken: Worker died. twice while loading")
    assert server.registration_failures(["fine"]) == ["Model not found at: /work/new.mar"]


def test_the_security_pages_table_is_what_config_properties_says():
    from hflabels.torchserve_config import read_properties

    section = (REPO / "docs" / "operations" / "security.md").read_text(encoding="utf-8")
    claims = re.findall(r"^\| `([a-z_]+)=([^`]*)` \|", section, flags=re.MULTILINE)
    assert len(claims) >= 8
    properties = read_properties(TORCHSERVE_CONFIG)
    for key, value in claims:
        assert properties.get(key) == value, f"security.md says {key}={value}, config.properties {properties.get(key)}"
    assert "model API off" not in section.replace("keeps the model API off", "")


def test_a_temperature_fitted_on_a_tiny_split_is_bounded_and_warned_about():
    import numpy as np

    from hflabels.training.evaluation import fit_calibration

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 0.3, (12, 3))  # nearly uninformative: the unbounded fit sharpens wildly
    truth = logits.argmax(axis=1)
    report: dict = {}
    fitted = fit_calibration("single_label", logits, truth, np.ones(3), report)
    assert report["fitted_temperature"][0] < 0.5 and fitted.temperature[0] == 0.5
    assert "fewer than 50" in report["warning"] and report["examples"] == 12
    low, high = report["temperature_interval_90"]
    assert low <= report["fitted_temperature"][0] <= high or low > 0
    many: dict = {}
    big_logits = rng.normal(0, 2, (400, 3))
    big_truth = np.array([rng.choice(3, p=np.exp(row) / np.exp(row).sum()) for row in big_logits])
    unbounded = fit_calibration("single_label", big_logits, big_truth, np.ones(3), many)
    assert "warning" not in many and many["examples"] == 400
    assert many["temperature_interval_90"][0] < unbounded.temperature[0] < many["temperature_interval_90"][1]


def test_pipeline_task_names_are_accepted_by_archive_and_train():
    from handler.api.tasks import Objective, Task

    assert Task.parse("text-classification") is Task.SEQUENCE_CLASSIFICATION
    assert Task.parse("zero-shot-classification") is Task.ZERO_SHOT_CLASSIFICATION
    assert Objective.parse("token-classification") is Objective.TOKEN_CLASSIFICATION
    assert Objective.parse("text-classification") is Objective.SINGLE_LABEL
    with pytest.raises(ValueError, match="unknown task 'ner'; choose one of single_label"):
        Objective.parse("ner")


def test_every_flag_of_every_command_has_a_help_line_and_says_its_default():
    import argparse
    import importlib

    from hflabels.cli import COMMANDS, HelpFormatter

    for name, (module_name, _) in COMMANDS.items():
        parser = argparse.ArgumentParser(prog=name, formatter_class=HelpFormatter)
        importlib.import_module(f"hflabels.commands.{module_name}").configure(parser)
        parsers = [parser] + [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                              for sub in action.choices.values()]  # fmt: skip
        for each in parsers:
            for action in each._actions:
                if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                    continue
                assert action.help, f"{name}: {action.option_strings or action.dest} has no help line"
    help_text = subprocess_help("train")
    assert "(default: 16)" in help_text and "``" not in help_text
    # Epochs and learning rate are left to the recipe (small data gets its own schedule): the help says both.
    assert "default: 5e-5, or 1e-4 on small data" in " ".join(help_text.split())
    assert "default: 8, or 20 where 8 would give fewer than 300" in " ".join(help_text.split())


def subprocess_help(command: str) -> str:
    import subprocess
    import sys

    console = Path(sys.executable).with_name("hflabels")
    return subprocess.run([str(console), command, "--help"], capture_output=True, text=True, check=True).stdout


def test_a_json_request_sent_as_text_plain_stays_text_and_gets_a_warning_header(sentiment_model, caplog):
    import logging

    from support import call

    handler, context = load_handler(sentiment_model)
    body = json.dumps({"inputs": "I loved it"})
    with caplog.at_level(logging.WARNING):
        results = call(handler, context, [("text/plain", body), ("text/plain", "I loved it"),
                                          ("text/plain", body)])  # fmt: skip
    assert all(status == 200 for status, _ in results)
    headers = [context.get_response_headers(index) for index in range(3)]
    assert "x-hflabels-warning" in headers[0] and "x-hflabels-warning" in headers[2]
    assert "x-hflabels-warning" not in headers[1]
    assert "Content-Type: application/json" in headers[0]["x-hflabels-warning"]
    warnings = [r for r in caplog.records if "text/plain body is a JSON request" in r.getMessage()]
    assert len(warnings) == 1, "logged once, not per request"


def test_serve_tells_where_the_token_is_and_when_it_expires(tmp_path):
    from hflabels.torchserve_control import Server

    (tmp_path / "key_file.json").write_text(json.dumps(
        {"inference": {"key": "abc", "expiration time": "2026-12-01T21:00:00Z"}, "management": {"key": "m"}}
    ))  # fmt: skip
    note = Server(tmp_path, "http://i", "http://m", "http://x").token_note()
    assert str(tmp_path / "key_file.json") in note and "expires 2026-12-01T21:00:00Z" in note
    assert "InvalidKeyException" in note
