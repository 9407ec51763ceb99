import json
import logging

import pytest

from handler.api.errors import ConfigurationError
from handler.api.labels import (
    check_label_count,
    is_default_name,
    labels_from_id2label,
    parse_label_list_string,
    parse_label_mapping,
    resolve_labels,
)

LOGGER = logging.getLogger("test-labels")


def test_index_mapping_in_index_order():
    assert parse_label_mapping('{"1": "positive", "0": "negative"}') == ("negative", "positive")


def test_list_values_use_their_last_element():
    assert parse_label_mapping('{"0": ["n01", "cat"], "1": ["n02", "dog"]}') == ("cat", "dog")


def test_label_list_as_json_list():
    assert parse_label_mapping('{"label_list": ["O", "B-PER"]}') == ("O", "B-PER")


def test_label_list_as_torchserve_string():
    assert parse_label_mapping('{"label_list": "[O, B-PER, I-PER]"}') == ("O", "B-PER", "I-PER")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[O, B-PER, I-PER]", ["O", "B-PER", "I-PER"]),
        ("['O', \"B-PER\" , 'I-PER']", ["O", "B-PER", "I-PER"]),
        ("['a, b', c]", ["a, b", "c"]),
        ("[single]", ["single"]),
        ("  [ x ,y ]  ", ["x", "y"]),
    ],
)
def test_label_list_string_forms(text, expected):
    assert parse_label_list_string(text) == expected


@pytest.mark.parametrize("text", ["O, B-PER", "[O,, B-PER]", "[]", "['O, B-PER]", "['O'x, B]", "[O, ]"])
def test_malformed_label_list_strings_are_refused(text):
    with pytest.raises(ValueError):
        parse_label_list_string(text)


def test_label_list_string_is_never_evaluated():
    # A Python expression is just an odd label name here, not code that runs.
    labels = parse_label_list_string("[__import__('os').system('false'), B]")
    assert labels == ["__import__('os').system('false')", "B"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "the mapping is empty"),
        ('{"0": "a", "2": "c"}', "without gaps; missing [1], unexpected [2]"),
        ('{"0": "a", "x": "b"}', "key 'x' is not a class index"),
        ('{"0": "a", "-1": "b"}', "is not a class index"),
        ('{"0": "a", "1": 3}', "must be a string"),
        ('{"0": "same", "1": "same"}', "duplicate label 'same' at indices 0 and 1"),
        ('{"0": "ok", "1": "  "}', "the label for index 1 is empty"),
        ('{"label_list": "[O, B-PER"}', "label_list is malformed"),
        ('{"label_list": 7}', "label_list must be a list"),
        ('{"label_list": ["O"], "0": "x"}', "label_list must be the only key"),
    ],
)
def test_bad_mappings_fail_with_the_file_and_problem(text, message):
    with pytest.raises(ConfigurationError) as raised:
        parse_label_mapping(text, "index_to_name.json")
    assert "index_to_name.json" in str(raised.value)
    assert message in str(raised.value)


def test_label_count_must_match_the_model():
    check_label_count(("a", "b"), 2)
    with pytest.raises(ConfigurationError, match="has 3 labels but the model has num_labels=2"):
        check_label_count(("a", "b", "c"), 2)


def test_default_names():
    assert is_default_name("LABEL_3", 3)
    assert not is_default_name("LABEL_3", 2)
    assert not is_default_name("positive", 0)


def test_id2label_with_int_or_string_keys():
    assert labels_from_id2label({0: "a", "1": "b"}, 2) == ("a", "b")


def test_mapping_file_wins_and_disagreement_is_logged(tmp_path, caplog):
    mapping = tmp_path / "index_to_name.json"
    mapping.write_text(json.dumps({"0": "neg", "1": "pos"}))
    with caplog.at_level(logging.WARNING, logger="test-labels"):
        labels = resolve_labels(mapping, {0: "negative", 1: "pos"}, 2, LOGGER)
    assert labels == ("neg", "pos")
    assert "0: mapping 'neg' vs id2label 'negative'" in caplog.text
    assert "1:" not in caplog.text.split("mapping wins:")[1]


def test_mapping_that_only_replaces_default_names_is_not_a_disagreement(tmp_path, caplog):
    mapping = tmp_path / "index_to_name.json"
    mapping.write_text(json.dumps({"0": "neg", "1": "pos"}))
    with caplog.at_level(logging.WARNING, logger="test-labels"):
        assert resolve_labels(mapping, {0: "LABEL_0", 1: "LABEL_1"}, 2, LOGGER) == ("neg", "pos")
    assert caplog.text == ""


def test_without_a_mapping_id2label_is_used(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="test-labels"):
        assert resolve_labels(tmp_path / "missing.json", {0: "ham", 1: "spam"}, 2, LOGGER) == ("ham", "spam")
    assert caplog.text == ""


def test_default_id2label_names_are_served_with_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="test-labels"):
        labels = resolve_labels(None, {0: "LABEL_0", 1: "LABEL_1"}, 2, LOGGER)
    assert labels == ("LABEL_0", "LABEL_1")
    assert caplog.text.count("default names") == 1


def test_mapping_with_the_wrong_count_fails(tmp_path):
    mapping = tmp_path / "index_to_name.json"
    mapping.write_text(json.dumps({"0": "a", "1": "b", "2": "c"}))
    with pytest.raises(ConfigurationError, match="index_to_name.json: has 3 labels but the model has num_labels=2"):
        resolve_labels(mapping, {}, 2, LOGGER)
