import pytest

from handler.api.errors import RequestError
from handler.api.request_parsing import (
    QuestionContext,
    TextInput,
    content_type_of,
    parse_inputs,
    parse_question_context,
    parse_text,
    parse_text_or_pair,
    read_request_body,
    require_text,
)

JSON = "application/json"


def body_error(item, content_type):
    with pytest.raises(RequestError) as raised:
        read_request_body(item, content_type)
    return raised.value


def test_content_type_header_is_found_in_any_case_without_parameters():
    assert content_type_of({"content-type": "Application/JSON; charset=utf-8"}) == "application/json"
    assert content_type_of({"Content-Type": "text/plain"}) == "text/plain"
    assert content_type_of({}) == ""


def test_raw_text_bodies():
    for item, content_type in [
        ({"body": "hello"}, "text/plain"),
        ({"body": bytearray(b"hello")}, "application/octet-stream"),
        ({"data": b"hello"}, ""),
    ]:
        body = read_request_body(item, content_type)
        assert (body.inputs, body.parameters, body.is_json) == ("hello", None, False)


def test_raw_text_that_looks_like_json_stays_text():
    assert read_request_body({"body": '{"inputs": "x"}'}, "text/plain").inputs == '{"inputs": "x"}'


def test_json_bodies_parsed_by_torchserve_or_by_us():
    for payload in [{"inputs": "hi", "parameters": {"top_k": 2}}, b'{"inputs": "hi", "parameters": {"top_k": 2}}']:
        body = read_request_body({"body": payload}, JSON)
        assert (body.inputs, body.parameters, body.is_json) == ("hi", {"top_k": 2}, True)


def test_form_encoded_curl_gets_the_exact_command_to_use():
    error = body_error({}, "application/x-www-form-urlencoded")
    assert error.status == 400
    assert "curl -H 'Content-Type: text/plain' --data-binary 'your text' URL" in error.message
    assert "Content-Type: application/json" in error.message


def test_form_encoded_fields_get_the_same_hint():
    assert (
        "form-encoded bodies (curl -d) lose the text"
        in body_error({"a": b"b"}, "application/x-www-form-urlencoded").message
    )


def test_multipart_fields_are_refused_by_name():
    assert "unsupported form or multipart fields ['file']" in body_error({"file": b"x"}, "multipart/form-data").message


@pytest.mark.parametrize(
    ("item", "content_type", "message"),
    [
        ({"body": b""}, "", "empty request body"),
        ({"body": ""}, "text/plain", "empty request body"),
        ({"body": bytearray(b"\xff\xfehi")}, "text/plain", "not valid UTF-8 (byte 0xff at position 0)"),
        ({"body": b'{"inputs": '}, JSON, "malformed JSON: Expecting value at line 1 column 12"),
        ({"body": b"[" * 100_000}, JSON, "malformed JSON"),
        ({"body": 3}, JSON, "must be an object like"),
        ({"body": None}, JSON, "got null"),
        ({"body": [{"inputs": "x"}]}, JSON, "got a list"),
        ({"body": "just a string"}, JSON, "got a string"),
        ({"body": {"text": "x"}}, JSON, "unknown JSON field(s) text"),
        ({"body": {"parameters": {}}}, JSON, 'needs an "inputs" field'),
    ],
)
def test_bad_bodies(item, content_type, message):
    error = body_error(item, content_type)
    assert error.status == 400
    assert message in error.message


def test_parse_inputs_single_and_list():
    assert parse_inputs("a", parse_text, 10) == (("a",), False)
    assert parse_inputs(["a", "b"], parse_text, 10) == (("a", "b"), True)


def test_a_bad_element_names_its_index():
    with pytest.raises(RequestError, match=r"inputs\[1\] is empty"):
        parse_inputs(["fine", "  "], parse_text, 10)


def test_empty_and_oversized_lists():
    with pytest.raises(RequestError, match="inputs is an empty list"):
        parse_inputs([], parse_text, 10)
    with pytest.raises(RequestError) as raised:
        parse_inputs(["a"] * 11, parse_text, 10)
    assert raised.value.status == 413
    assert "holds 11 items; at most 10" in raised.value.message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "inputs is empty"),
        (" \n\t", "inputs is empty"),
        (5, "inputs must be a string, got a number"),
        (["nested"], "inputs must be a string, got a list"),
        ("bad \ud800 surrogate", "unpaired UTF-16 surrogate"),
    ],
)
def test_require_text(value, message):
    with pytest.raises(RequestError, match=message):
        require_text(value, "inputs")


def test_control_characters_and_emoji_are_text():
    assert require_text("tab\there \x07 \U0001f600 مرحبا 你好", "inputs")


def test_text_pairs():
    assert parse_text_or_pair("a", "inputs") == TextInput("a")
    assert parse_text_or_pair({"text": "a", "text_pair": "b"}, "inputs") == TextInput("a", "b")
    with pytest.raises(RequestError, match="inputs is missing text"):
        parse_text_or_pair({"text_pair": "b"}, "inputs")
    with pytest.raises(RequestError, match=r"unknown field\(s\) premise"):
        parse_text_or_pair({"text": "a", "premise": "b"}, "inputs")


def test_question_context():
    assert parse_question_context({"question": "q", "context": "c"}, "inputs") == QuestionContext("q", "c")
    with pytest.raises(RequestError, match="inputs is missing context"):
        parse_question_context({"question": "q"}, "inputs")
    with pytest.raises(RequestError, match="must be an object with question, context, got a string"):
        parse_question_context("q", "inputs")
