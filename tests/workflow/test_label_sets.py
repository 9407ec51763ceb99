"""Label sets: one archive answering under other names (index_to_name.<set>.json)."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from conftest import REPO_ROOT
from support import call_one, load_handler, script, write_json

from handler.api.errors import ConfigurationError
from handler.api.labels import check_label_set, label_set_file_name, label_set_files, load_label_sets

MAPPINGS = REPO_ROOT / "mappings"


def test_sets_are_found_beside_the_main_mapping_and_checked(tmp_path):
    write_json(tmp_path / "index_to_name.de.json", {"0": "negativ", "1": "neutral", "2": "positiv"})
    write_json(tmp_path / "index_to_name.json", {"0": "negative", "1": "neutral", "2": "positive"})
    (tmp_path / "index_to_name.De.json").write_text("{}")  # not a set name: ignored
    files = label_set_files(tmp_path)
    assert list(files) == ["de"]
    assert load_label_sets(files, ("negative", "neutral", "positive")) == {"de": ("negativ", "neutral", "positiv")}


@pytest.mark.parametrize(
    ("main", "other", "message"),
    [
        (("a", "b"), ("x",), "has 1 labels but the model has num_labels=2"),
        (("O", "B-PER", "I-PER"), ("O", "PERSON", "I-PERSON"), "index 1 is 'PERSON' but the main label is 'B-PER'"),
        (("O", "B-PER"), ("X", "B-PERSONNE"), "index 0 is 'X' but the main label is 'O'"),
    ],
)
def test_a_set_must_rename_every_output_and_keep_bio_prefixes(main, other, message):
    with pytest.raises(ConfigurationError, match=message):
        check_label_set(main, other, "index_to_name.x.json")


def test_set_names_suit_file_names():
    assert label_set_file_name("pt-br") == "index_to_name.pt-br.json"
    with pytest.raises(ConfigurationError, match="label set name '../de'"):
        label_set_file_name("../de")


@pytest.fixture
def sentiment_with_sets(sentiment_model, tmp_path):
    folder = shutil.copytree(sentiment_model, tmp_path / "model")
    shutil.copyfile(MAPPINGS / "sentiment_3way.de.json", folder / "index_to_name.de.json")
    shutil.copyfile(MAPPINGS / "sentiment_3way.fr.json", folder / "index_to_name.fr.json")
    return folder


def test_a_request_picks_a_set_and_the_scores_stay(sentiment_with_sets):
    handler, context = load_handler(sentiment_with_sets)
    text = "The staff were friendly."
    _, main = call_one(handler, context, {"inputs": text, "parameters": {"top_k": None}})
    _, german = call_one(handler, context, {"inputs": text, "parameters": {"top_k": None, "label_set": "de"}})
    to_german = {"negative": "negativ", "neutral": "neutral", "positive": "positiv"}
    assert german == [{"label": to_german[item["label"]], "score": item["score"]} for item in main]
    status, answer = call_one(handler, context, {"inputs": text, "parameters": {"label_set": "es"}})
    assert status == 400 and answer["error"] == "parameters.label_set 'es' is not in this archive; available: de, fr"


def test_a_bad_set_fails_the_load_with_its_file_name(sentiment_with_sets):
    from support import make_context

    from handler.torchserve_handler import TransformersLabelHandler

    write_json(sentiment_with_sets / "index_to_name.it.json", {"0": "negativo", "1": "positivo"})
    with pytest.raises(ConfigurationError, match="index_to_name.it.json: has 2 labels but the model has num_labels=3"):
        TransformersLabelHandler().initialize(make_context(sentiment_with_sets))


def test_multi_label_thresholds_by_main_names_apply_under_every_set(topics_model, tmp_path):
    folder = shutil.copytree(topics_model, tmp_path / "topics")
    write_json(folder / "index_to_name.de.json", {"0": "Rechnung", "1": "Fehler", "2": "Wunsch", "3": "Lob"})
    thresholds = {"billing": 0.0, "bug": 1.0, "feature_request": 1.0, "praise": 0.0}
    handler, context = load_handler(folder, {"label_thresholds": thresholds})
    _, main = call_one(handler, context, {"inputs": "the app crashes"})
    _, german = call_one(handler, context, {"inputs": "the app crashes", "parameters": {"label_set": "de"}})
    assert {item["label"] for item in main} == {"billing", "praise"}
    assert {item["label"] for item in german} == {"Rechnung", "Lob"}


def test_token_classification_sets_rename_entity_types(keyword_ner_model, tmp_path):
    folder = shutil.copytree(keyword_ner_model, tmp_path / "ner")
    write_json(folder / "index_to_name.fr.json", {"label_list": ["O", "B-PERSONNE", "I-PERSONNE", "B-LIEU", "I-LIEU"]})
    handler, context = load_handler(folder)
    text = "Alice Johnson lives in Paris"
    _, main = call_one(handler, context, {"inputs": text})
    _, french = call_one(handler, context, {"inputs": text, "parameters": {"label_set": "fr"}})
    assert [e["entity_group"] for e in main] == ["PER", "LOC"]
    assert [e["entity_group"] for e in french] == ["PERSONNE", "LIEU"]
    assert [(e["start"], e["end"], e["score"]) for e in french] == [(e["start"], e["end"], e["score"]) for e in main]


def test_archive_takes_sets_as_set_equals_file(sentiment_model, tmp_path, capsys):
    archive = script("archive")
    argv = [str(sentiment_model), "--name", "m", "--export-path", str(tmp_path),
            "--mapping", str(MAPPINGS / "sentiment_3way.json"),
            "--mapping", f"de={MAPPINGS / 'sentiment_3way.de.json'}",
            "--mapping", f"fr={MAPPINGS / 'sentiment_3way.fr.json'}"]  # fmt: skip
    assert archive(argv) == 0
    assert "label sets: de, fr" in capsys.readouterr().out
    with zipfile.ZipFile(tmp_path / "m.mar") as mar:
        assert json.loads(mar.read("index_to_name.fr.json")) == {"0": "négatif", "1": "neutre", "2": "positif"}
        assert "index_to_name.de.json" in mar.namelist()
    bad = write_json(tmp_path / "bad.json", {"0": "a", "1": "b"})
    assert archive([str(sentiment_model), "--name", "m", "--export-path", str(tmp_path), "--mapping", f"it={bad}"]) == 2
    assert "bad.json: has 2 labels but the model has num_labels=3" in capsys.readouterr().err
