import dataclasses
import math

import pytest
import yaml

from handler.api.errors import ConfigurationError
from handler.api.parameters import ParamSpec, validate_parameters
from handler.api.settings import HandlerSettings
from handler.api.tasks import Task
from hflabels.paths import MODEL_CONFIG

SCHEMA = {
    "top_k": ParamSpec("int", minimum=1, nullable=True),
    "threshold": ParamSpec("float", minimum=0.0, maximum=1.0),
    "do_sample": ParamSpec("bool"),
    "mode": ParamSpec("choice", choices=("a", "b")),
    "stop": ParamSpec("str_list", max_items=2, accepts_single_string=True),
}


def test_only_given_parameters_come_back_converted():
    assert validate_parameters({"top_k": 2.0, "threshold": 1}, SCHEMA) == {"top_k": 2, "threshold": 1.0}
    assert validate_parameters(None, SCHEMA) == {}


def test_unknown_parameters_are_named_with_the_allowed_ones():
    with pytest.raises(ValueError) as raised:
        validate_parameters({"topk": 1, "temp": 2}, SCHEMA)
    assert "unknown parameters: temp, topk" in str(raised.value)
    assert "allowed: do_sample, mode, stop, threshold, top_k" in str(raised.value)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"top_k": 0}, "parameters.top_k must be an integer >= 1 or null, got 0"),
        ({"top_k": True}, "parameters.top_k must be an integer >= 1 or null, got a boolean"),
        ({"top_k": 1.5}, "parameters.top_k must be an integer >= 1 or null, got 1.5"),
        ({"top_k": "3"}, "got a string"),
        ({"threshold": 2}, "parameters.threshold must be a number >= 0 and <= 1, got 2.0"),
        ({"threshold": math.nan}, "got nan"),
        ({"threshold": None}, "got null"),
        ({"do_sample": 1}, "parameters.do_sample must be true or false, got a number"),
        ({"mode": "c"}, "parameters.mode must be one of 'a', 'b', got 'c'"),
        ({"stop": [1]}, "parameters.stop must be a list of at most 2 strings, got a list"),
        ({"stop": ["a", "b", "c"]}, "may hold at most 2 strings, got 3"),
    ],
)
def test_bad_values_name_the_parameter_and_the_rule(given, message):
    with pytest.raises(ValueError) as raised:
        validate_parameters(given, SCHEMA)
    assert message in str(raised.value)


def test_nullable_and_single_string_forms():
    assert validate_parameters({"top_k": None, "stop": "\n"}, SCHEMA) == {"top_k": None, "stop": ("\n",)}


def test_parameters_must_be_an_object():
    with pytest.raises(ValueError, match="parameters must be a JSON object, got a list"):
        validate_parameters([1], SCHEMA)


def test_settings_defaults_when_the_section_is_absent():
    settings = HandlerSettings.from_mapping(None)
    assert settings == HandlerSettings()
    assert settings.task is None and settings.limits.max_length == 512 and not settings.loading.allow_pickle_weights


def test_settings_are_typed_and_frozen():
    settings = HandlerSettings.from_mapping(
        {"task": "token_classification", "max_length": 128, "label_thresholds": {"bug": 0.3}, "stride": 16}
    )
    assert settings.task is Task.TOKEN_CLASSIFICATION
    assert settings.classification.label_thresholds == {"bug": 0.3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.limits.max_length = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.limits = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.classification.label_thresholds["bug"] = 0.9  # type: ignore[index]


def test_every_settings_problem_is_named_in_one_error():
    with pytest.raises(ConfigurationError) as raised:
        HandlerSettings.from_mapping(
            {"max_lenght": 10, "task": "summarize", "micro_batch_size": 0, "label_thresholds": {"x": 3}}
        )
    message = str(raised.value)
    assert "unknown key(s) max_lenght" in message
    assert "handler.task: unknown task 'summarize'; valid tasks are: sequence_classification" in message
    assert "handler.micro_batch_size must be an integer >= 1 and <= 4096, got 0" in message
    assert "handler.label_thresholds.x must be a number between 0 and 1, got 3" in message


def test_settings_section_must_be_a_mapping():
    with pytest.raises(ConfigurationError, match="the handler section must be a mapping, got a list"):
        HandlerSettings.from_mapping(["task"])


def test_effective_max_length_is_the_smaller_limit():
    settings = HandlerSettings.from_mapping({"limits": {"max_length": 256}})
    assert settings.effective_max_length(128) == 128
    assert settings.effective_max_length(512) == 256
    assert settings.effective_max_length(None) == 256


def test_grouped_and_flat_spellings_read_the_same_and_clash_when_both_given():
    from handler.api.settings import LongText, Precision

    flat = HandlerSettings.from_mapping(
        {"dtype": "bfloat16", "micro_batch_size": 8, "stride": 4, "multi_label": True, "max_candidate_labels": 3,
         "max_new_tokens_limit": 9, "explain_steps": 5, "cache_size_mb": 1, "long_text": "mean"}
    )  # fmt: skip
    grouped = HandlerSettings.from_mapping(
        {"loading": {"dtype": "bfloat16"}, "batching": {"micro_batch_size": 8}, "limits": {"stride": 4},
         "classification": {"multi_label": True}, "zero_shot": {"max_candidate_labels": 3},
         "generation": {"max_new_tokens_limit": 9}, "explanations": {"steps": 5}, "serving": {"cache_size_mb": 1},
         "parameters": {"long_text": "mean"}}
    )  # fmt: skip
    assert flat == grouped
    assert grouped.loading.dtype is Precision.BFLOAT16 and LongText(grouped.parameters["long_text"]).windowed
    with pytest.raises(ConfigurationError) as raised:
        HandlerSettings.from_mapping(
            {"dtype": "float32", "loading": {"dtype": "bfloat16", "speed": 1}, "long_text": "max",
             "parameters": {"long_text": "mean"}, "batching": 3}
        )  # fmt: skip
    message = str(raised.value)
    assert "handler.dtype is given twice: as handler.dtype and as handler.loading.dtype" in message
    assert "handler.long_text is given twice" in message
    assert "handler.loading: unknown key(s) speed (allowed: allow_pickle_weights, attn_implementation" in message
    assert "handler.batching must be a mapping, got a number" in message
    with pytest.raises(ConfigurationError, match="handler.loading.dtype must be one of 'float32', 'float16'"):
        HandlerSettings.from_mapping({"loading": {"dtype": "int4"}})


def test_the_shipped_model_config_uses_the_current_grouped_spelling():

    import yaml

    from handler.api.settings import FLAT_KEYS

    shipped = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]
    assert not set(shipped) & set(FLAT_KEYS), "model-config.yaml uses a flat (earlier) spelling"
    HandlerSettings.from_mapping(shipped)


def test_every_key_a_user_can_set_is_documented_once_with_its_check():
    from dataclasses import fields

    from handler.api.settings import GROUPS, TOP_LEVEL, HandlerSettings
    from handler.api.settings.reference import reference_rows

    rows = {row.key: row for row in reference_rows()}
    accepted = set(TOP_LEVEL) | {f"{group}.{item.name}" for group, kind in GROUPS.items() for item in fields(kind)}
    assert set(rows) == accepted
    for key, row in rows.items():
        assert len(row.doc) > 20 and row.doc.endswith((".", ")")), f"{key} needs a sentence of documentation"
        assert row.accepts, f"{key} says nothing of what it accepts"
    # Every field of HandlerSettings is either a group or a documented key: nothing is accepted undocumented.
    assert {item.name for item in fields(HandlerSettings)} == set(GROUPS) | set(TOP_LEVEL)


def test_the_reference_shows_what_an_absent_key_means_and_the_shipped_config_sets_only_documented_keys():
    from handler.api.settings.reference import reference_rows

    rows = {row.key: row for row in reference_rows()}
    assert rows["loading.dtype"].default == "auto" and rows["batching.packed_forward"].default == "auto"
    assert rows["batching.max_batch_tokens"].default == "2048"
    assert rows["loading.attn_implementation"].default == "null"
    shipped = yaml.safe_load(MODEL_CONFIG.read_text())["handler"]
    for group, values in shipped.items():
        for key in values:
            assert f"{group}.{key}" in rows, f"the shipped model-config.yaml sets an undocumented {group}.{key}"
    # An absent key means what the shipped file says, so an archive made with another config is served alike.
    defaults = HandlerSettings()
    assert defaults.batching.max_batch_tokens == HandlerSettings.from_mapping(shipped).batching.max_batch_tokens
