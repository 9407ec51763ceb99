"""``hflabels calibrate``: refit calibration and guarantees on labelled data, rewrite model-config."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import script

from handler.api.request_parsing import RequestBody
from handler.api.settings import ConformalMethod
from handler.postprocess.conformal import aps_set
from hflabels.archiving import check_label_settings, renamed_label_settings
from hflabels.calibrating import folder_logits
from hflabels.evaluation import folder_runner
from hflabels.training.data import load_examples
from hflabels.training.guarantees import fit_conformal, split_for_guarantees
from hflabels.vader_data import fetch_sdist, read_corpora

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory) -> Path:
    """800 real movie sentences with their human labels."""
    sentences = read_corpora(fetch_sdist(REPO / "build" / "downloads"), ["movies"])["movies"]
    sentences = [sentences[i] for i in np.random.default_rng(0).permutation(len(sentences))[:800]]
    path = tmp_path_factory.mktemp("calibrate") / "movies.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        writer.writerows([s.text, s.label] for s in sentences)
    return path


@pytest.fixture
def folder(sentiment_model, tmp_path) -> Path:
    return Path(shutil.copytree(sentiment_model, tmp_path / "model"))


def config_of(folder: Path) -> dict:
    return yaml.safe_load((folder / "model-config.yaml").read_text())["handler"]


def test_calibrate_refits_and_the_served_sets_are_the_held_out_conformal_sets(folder, movie_file, capsys):
    assert script("calibrate")([str(folder), "--data", str(movie_file), "--method", "aps",
                                "--abstain-error", "0.65", "--coverage", "0.9", "--coverage", "0.8"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "calibration fitted on 400 examples" in out and "prediction sets (aps, 400 held-out examples)" in out
    handler = config_of(folder)
    assert handler["conformal"]["method"] == "aps" and set(handler["conformal"]["thresholds"]) == {0.8, 0.9}
    assert handler["abstention"]["max_error"] == 0.65
    assert set(handler["monitoring"]["reference"]["labels"]) == {"negative", "neutral", "positive"}
    # 400 scaling examples: the top-label curve is fitted, and the runner serves through it.
    assert len(handler["classification"]["calibration"]["top_label"]["confidence"]) >= 2
    # The thresholds are the held-out split's conformal thresholds of the scores now served.
    runner = folder_runner(folder)
    examples = load_examples(movie_file, "single_label")
    truth = np.array([runner.labels.index(e.label) for e in examples])
    _, held_out = split_for_guarantees(truth, 0.5, seed=42)
    logits = folder_logits(runner, [examples[i] for i in held_out])
    from handler.postprocess.scoring import Activation, served_scores

    assert runner.calibration.top_label is not None
    scores = served_scores(logits, Activation.SOFTMAX, runner.calibration)
    expected = fit_conformal(scores, truth[held_out], ConformalMethod.APS, runner.labels, (0.8, 0.9))
    # To float32 rounding: the logits come from passes batched differently.
    assert handler["conformal"]["thresholds"] == pytest.approx(expected["thresholds"], abs=1e-6)
    texts = [examples[i].text for i in held_out[:20]]
    [outcome] = runner.run([runner.parse(RequestBody(texts, {"coverage": 0.9}, True))]).outcomes
    for answer, row in zip(outcome.payload, scores[:20]):
        assert answer["prediction_set"] == [runner.labels[i] for i in aps_set(row, expected["thresholds"][0.9])]


def test_keep_scaling_keeps_the_calibration_and_uses_every_example(folder, movie_file, capsys):
    assert not (folder / "model-config.yaml").exists()
    assert script("calibrate")([str(folder), "--data", str(movie_file), "--keep-scaling"]) == 0
    handler = config_of(folder)
    assert "classification" not in handler
    assert handler["conformal"]["examples"] == 800 and "abstention" not in handler


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "class_conditional"], "label 'neutral' has [0-9] held-out examples, fewer than the"),
        (["--method", "fnr_control"], "does not apply to a single-label model"),
        (["--abstain-error", "0.001"], "no threshold keeps the error among answered examples at most 0.001"),
    ],
)
def test_what_the_data_cannot_support_is_refused_and_the_folder_kept(folder, movie_file, capsys, extra, message):
    before = (folder / "model-config.yaml").read_bytes() if (folder / "model-config.yaml").exists() else None
    assert script("calibrate")([str(folder), "--data", str(movie_file), *extra]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    after = (folder / "model-config.yaml").read_bytes() if (folder / "model-config.yaml").exists() else None
    assert after == before


def test_data_naming_other_labels_is_refused(folder, tmp_path, capsys):
    data = tmp_path / "other.csv"
    data.write_text("text,label\n" + "".join(f"text {i},spam\n" for i in range(40)))
    assert script("calibrate")([str(folder), "--data", str(data)]) == 2
    assert "the data names label(s) ['spam'] the model does not have" in capsys.readouterr().err


def test_renaming_labels_moves_class_conditional_thresholds_and_the_drift_reference():
    from handler.api.settings import HandlerSettings

    handler = {
        "conformal": {"method": "class_conditional", "examples": 300,
                      "thresholds": {0.9: {"negative": 0.5, "neutral": 0.6, "positive": 0.4}}},
        "monitoring": {"reference": {"labels": {"negative": 0.4, "neutral": 0.1, "positive": 0.5},
                                     "confidence": [1.0] + [0.0] * 7}},
    }  # fmt: skip
    renames = {"negative": "NEG", "neutral": "NEU", "positive": "POS"}
    renamed = renamed_label_settings(handler, renames)
    assert renamed["conformal"]["thresholds"][0.9] == {"NEG": 0.5, "NEU": 0.6, "POS": 0.4}
    assert renamed["monitoring"]["reference"]["labels"] == {"NEG": 0.4, "NEU": 0.1, "POS": 0.5}
    check_label_settings(HandlerSettings.from_mapping(renamed), ["NEG", "NEU", "POS"])
    from handler.api.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"names label\(s\) \['negative', 'neutral', 'positive'\]"):
        check_label_settings(HandlerSettings.from_mapping(handler), ["NEG", "NEU", "POS"])
