"""Hard to break: bad input in a shared batch, oversized and odd requests, auth, logs, worker death."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from support import JSON, TEXT, assert_same_answers, batch_count, post
from transformers import pipeline

pytestmark = pytest.mark.e2e

GOOD = ["I loved it", "The package arrived on Tuesday in Paris.", "What a fantastic movie!"]
FORM = "application/x-www-form-urlencoded"

FAULTS = [
    ("empty body", b"", TEXT, 400, "empty request body"),
    ("whitespace only", b"  \n\t ", TEXT, 400, "inputs is empty"),
    ("invalid UTF-8", b"\xff\xfe\xfd", TEXT, 400, "not valid UTF-8 (byte 0xff at position 0)"),
    ("malformed JSON", b'{"inputs": "x"', JSON, 400, "malformed JSON: Expecting ',' delimiter"),
    ("JSON number", b"3", JSON, 400, "must be an object like"),
    ("JSON null", b"null", JSON, 400, "got null"),
    ("nested lists", {"inputs": [["a", "b"]]}, JSON, 400, "inputs[0] must be a string, got a list"),
    ("inputs missing", {"parameters": {"top_k": 1}}, JSON, 400, 'needs an "inputs" field'),
    ("one bad element", {"inputs": ["fine", 7, "also fine"]}, JSON, 400, "inputs[1] must be a string, got a number"),
    (
        "unknown parameter",
        {"inputs": "x", "parameters": {"temperature": 1}},
        JSON,
        400,
        "unknown parameters: temperature",
    ),
    ("top_k 0", {"inputs": "x", "parameters": {"top_k": 0}}, JSON, 400, "top_k must be an integer >= 1 or null, got 0"),
    (
        "threshold 2",
        {"inputs": "x", "parameters": {"threshold": 2}},
        JSON,
        400,
        "threshold must be a number >= 0 and <= 1",
    ),
    ("too many inputs", {"inputs": ["x"] * 65}, JSON, 413, "inputs holds 65 items; at most 64"),
    ("form-encoded", b"text=I+loved+it", FORM, 400, "form-encoded bodies (curl -d) lose the text"),
]


@pytest.fixture(scope="module")
def reference(sentiment_model):
    return pipeline("text-classification", model=str(sentiment_model), tokenizer=str(sentiment_model))


@pytest.mark.parametrize(("name", "body", "content_type", "status", "message"), FAULTS, ids=[f[0] for f in FAULTS])
def test_a_bad_request_batched_with_good_ones(torchserve, reference, name, body, content_type, status, message):
    before = batch_count(torchserve, "batched")
    requests_in_batch = [(body, content_type)] + [({"inputs": text}, JSON) for text in GOOD]
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda r: post(torchserve, "batched", r[0], content_type=r[1]), requests_in_batch))
    assert batch_count(torchserve, "batched") - before == 1, "all four must share one batch"
    bad, *good = responses
    assert bad.status_code == status
    assert message in bad.json()["error"]
    for text, response in zip(GOOD, good):
        assert response.status_code == 200
        assert_same_answers(response.json(), reference(text)[0])


MEGABYTE_TEXT = ("The weather in London is rainy and grey today. " * 22_000)[:1_000_000]


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("sentiment", {"inputs": MEGABYTE_TEXT}),
        ("keyword_ner", {"inputs": MEGABYTE_TEXT}),
        ("keyword_qa", {"inputs": {"question": "Who?", "context": MEGABYTE_TEXT}}),
        ("lm", {"inputs": MEGABYTE_TEXT, "parameters": {"max_new_tokens": 4}}),
    ],
)
def test_a_one_megabyte_text_is_served_and_flagged_as_cut(torchserve, model, body):
    started = time.monotonic()
    response = post(torchserve, model, body)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["x-truncated-inputs"] == "1"
    assert time.monotonic() - started < 60


def test_a_body_over_max_request_size_gets_413_and_the_server_stays_healthy(torchserve):
    response = post(torchserve, "sentiment", {"inputs": "x" * 3_000_000})
    assert response.status_code == 413
    after = post(torchserve, "sentiment", {"inputs": "still here"})
    assert after.status_code == 200 and "label" in after.json()


def test_an_unknown_model_is_404(torchserve):
    response = post(torchserve, "no_such_model", {"inputs": "x"})
    assert response.status_code == 404
    assert "no_such_model" in response.text


@pytest.mark.parametrize(
    "text",
    [
        "tab\there\x00nul\x07bell\x1b[31mansi",
        "emoji 😀🎉👍🏽 and ZWJ 👩‍👩‍👧",
        "mixed: Привет мир, مرحبا بالعالم, 你好世界, שלום",
    ],
    ids=["control characters", "emoji", "mixed scripts"],
)
def test_unusual_text_is_just_text(torchserve, reference, text):
    response = post(torchserve, "sentiment", {"inputs": text, "parameters": {"top_k": None}})
    assert response.status_code == 200
    assert_same_answers(response.json(), reference(text, top_k=None))


def test_request_text_never_reaches_the_logs(torchserve):
    secret = "zebra-quartz-7419 confidential"
    assert post(torchserve, "sentiment", {"inputs": secret}).status_code == 200
    assert post(torchserve, "sentiment", {"inputs": secret, "parameters": {"top_k": -1}}).status_code == 400
    assert post(torchserve, "sentiment", secret.encode(), content_type=FORM).status_code == 400
    time.sleep(1)
    for log in (torchserve.run_dir / "logs").glob("*.log"):
        assert "zebra-quartz" not in log.read_text(errors="replace"), f"request text in {log.name}"


def test_a_plain_start_with_the_shipped_config_logs_at_info_once(torchserve):
    # The session server is started without --log-config, from a folder like the project root, as the README's
    # `torchserve --start --ts-config config.properties` does: the vmargs must pick log4j2.xml.
    for _ in range(3):
        assert post(torchserve, "sentiment", {"inputs": "fine"}).status_code == 200
    time.sleep(1)
    logs = torchserve.run_dir / "logs"
    ts_log = (logs / "ts_log.log").read_text(errors="replace")
    assert "sentiment" in ts_log, "the frontend wrote its log"
    # TorchServe's built-in configuration logs org.pytorch.serve at DEBUG, several lines per request.
    assert "[DEBUG]" not in ts_log
    # ... and copies every root line to the console, which the launcher log captures.
    assert "[INFO ]" not in (logs / "launcher.log").read_text(errors="replace")
    # Named by vmargs (TorchServe's "." classpath would also find it in the start folder, but not
    # in a KServe pod, whose store names it the same way: tests/test_kserve_store.py).
    jvm_options = _frontend(torchserve).cmdline()
    assert "-Dlog4j.configurationFile=log4j2.xml" in jvm_options
    # ... and so does the JIT choice: C1 only (C2's recompiling under load took CPU from the model).
    assert "-XX:TieredStopAtLevel=1" in jvm_options


def _frontend(torchserve) -> psutil.Process:
    return next(
        process for process in psutil.process_iter(["cmdline"])
        if process.info["cmdline"] and any("org.pytorch.serve.ModelServer" in part for part in process.info["cmdline"])
        and str(torchserve.run_dir) in json.dumps(process.environ())
    )  # fmt: skip


# ---- security ----------------------------------------------------------------------------------


def test_missing_or_wrong_token_is_refused(torchserve):
    for token in (None, "wrong-token"):
        response = post(torchserve, "sentiment", {"inputs": "x"}, token=token)
        assert response.status_code == 400  # TorchServe 0.12 answers token failures with 400
        assert response.json()["type"] == "InvalidKeyException"


def test_the_management_api_cannot_register_a_model(torchserve):
    headers = torchserve.auth(torchserve.management_token)
    response = requests.post(
        f"{torchserve.management_url}/models",
        params={"url": "https://example.com/evil.mar"},
        headers=headers,
        timeout=10,
    )
    # The model API is on (hflabels serve deploy registers from the store); allowed_urls refuses every URL.
    assert response.status_code == 404, response.text
    assert "does not match any allowed URL" in response.json()["message"]
    assert "evil" not in requests.get(f"{torchserve.management_url}/models", headers=headers, timeout=10).text


def test_every_listener_is_on_loopback(torchserve):
    java = _frontend(torchserve)
    listening = [c.laddr for c in java.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "torchserve listens somewhere"
    addresses = {ipaddress.ip_address(address.ip) for address in listening}
    addresses = {getattr(address, "ipv4_mapped", None) or address for address in addresses}
    assert all(address.is_loopback for address in addresses), addresses


# ---- a worker dies under load ------------------------------------------------------------------


def test_a_killed_worker_comes_back_and_later_requests_are_right(torchserve, reference):
    """Clients see the requests in flight when the worker dies fail with a 5xx; TorchServe starts
    a new worker and every request after that is answered, and answered right."""
    expected = {text: reference(text)[0] for text in GOOD}
    results: list[tuple[float, int, str, dict | None]] = []
    stop = threading.Event()

    def client(text: str) -> None:
        while not stop.is_set():
            try:
                response = post(torchserve, "crashy", {"inputs": text})
                results.append((time.monotonic(), response.status_code, text, response.json()))
            except requests.RequestException:
                results.append((time.monotonic(), 0, text, None))

    threads = [threading.Thread(target=client, args=(GOOD[i % 3],)) for i in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    worker_pid = torchserve.describe_model("crashy")[0]["workers"][0]["pid"]
    killed_at = time.monotonic()
    psutil.Process(worker_pid).kill()
    deadline = killed_at + 60
    while time.monotonic() < deadline and torchserve.ready_workers("crashy") == 0 or time.monotonic() < killed_at + 3:
        time.sleep(0.2)
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    new_pid = torchserve.describe_model("crashy")[0]["workers"][0]["pid"]
    assert new_pid != worker_pid
    failures = [(t - killed_at, status) for t, status, _, _ in results if status != 200]
    assert all(status >= 500 or status == 0 for _, status in failures), failures
    recovered = [r for r in results if r[1] == 200 and r[0] > killed_at]
    assert recovered, "service must come back"
    back_after = recovered[0][0] - killed_at
    assert back_after < 60
    last_failure = max((t for t, _ in failures), default=0.0)
    for t, status, text, answer in results:
        if t > killed_at + last_failure + 0.001:
            assert status == 200
            assert_same_answers(answer, expected[text])


def test_an_oversized_generation_is_refused_up_front_and_the_worker_lives(torchserve):
    pid = torchserve.describe_model("lm")[0]["workers"][0]["pid"]
    started = time.monotonic()
    response = post(torchserve, "lm", {"inputs": "The weather", "parameters": {"max_new_tokens": 1_000_000}})
    assert response.status_code == 400 and time.monotonic() - started < 5
    assert "max_new_tokens must be an integer >= 1 and <= 64" in response.json()["error"]
    assert torchserve.describe_model("lm")[0]["workers"][0]["pid"] == pid
