"""KServe: a real torchserve started from a KServe store, behind each envelope, answering like /predictions."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests
from conftest import REPO_ROOT
from support import assert_same_answers, post, script

from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import start, stop

kserve_store_main = script("kserve-store")


@pytest.fixture(scope="module", params=["v1", "v2"])
def kserve_server(request, tmp_path_factory, sentiment_model, keyword_ner_model):
    """A torchserve started from a KServe store (ports moved to free loopback ones)."""
    root = tmp_path_factory.mktemp(f"kserve_{request.param}")
    models = ["--model", f"sentiment={sentiment_model}", "--model", f"keyword_ner={keyword_ner_model}"]
    assert kserve_store_main([*models, "--output", str(root / "store"), "--protocol", request.param]) == 0
    config = config_with_free_ports(root / "store" / "config" / "config.properties", root / "config.properties")
    server = start(config, root / "store" / "model-store", [], root / "run", timeout=300,
                   wait_for=["sentiment", "keyword_ner"])  # fmt: skip
    server.protocol = request.param  # type: ignore[attr-defined]
    yield server
    stop(root / "run")


pytestmark = pytest.mark.e2e

TEXTS = ["I loved it", "The package arrived on Tuesday in Paris.", "Alice Johnson moved to Berlin."]


def plain(torchserve, model: str, text: str, parameters: dict | None = None):
    body = {"inputs": text, **({"parameters": parameters} if parameters else {})}
    response = post(torchserve, model, body)
    assert response.status_code == 200
    return response.json()


def kserve(server, model: str, texts: list) -> requests.Response:
    if server.protocol == "v1":
        url = f"{server.inference_url}/v1/models/{model}:predict"
        body = {"instances": texts}
    else:
        url = f"{server.inference_url}/v2/models/{model}/infer"
        tensors = [
            {
                "name": f"text-{i}",
                "shape": [1],
                "datatype": "BYTES",
                "data": [t if isinstance(t, str) else json.dumps(t)],
            }
            for i, t in enumerate(texts)
        ]
        body = {"id": "request-1", "inputs": tensors}
    return requests.post(url, json=body, timeout=60)


def answers(server, response: requests.Response) -> list:
    document = response.json()
    if server.protocol == "v1":
        return document["predictions"]
    assert [output["name"] for output in document["outputs"]] == [f"text-{i}" for i in range(len(document["outputs"]))]
    return [json.loads(output["data"][0]) for output in document["outputs"]]


@pytest.mark.parametrize("model", ["sentiment", "keyword_ner"])
def test_each_instance_gets_the_plain_predictions_answer_in_order(kserve_server, torchserve, model):
    response = kserve(kserve_server, model, TEXTS)
    assert response.status_code == 200, response.text
    assert_same_answers(answers(kserve_server, response), [plain(torchserve, model, text) for text in TEXTS])


@pytest.mark.parametrize("kserve_server", ["v1"], indirect=True)
def test_v1_accepts_data_objects_and_pairs(kserve_server, torchserve):
    response = kserve(kserve_server, "sentiment", [{"data": TEXTS[0]}, {"text": "a", "text_pair": "b"}])
    assert response.status_code == 200
    expected = [
        plain(torchserve, "sentiment", TEXTS[0]),
        post(torchserve, "sentiment", {"inputs": {"text": "a", "text_pair": "b"}}).json(),
    ]
    assert_same_answers(answers(kserve_server, response), expected)


def test_a_bad_instance_fails_the_request_and_says_which(kserve_server, torchserve):
    response = kserve(kserve_server, "sentiment", [TEXTS[0], "   "])
    assert response.status_code == 400
    items = answers(kserve_server, response)
    assert items[1] == {"error": "inputs is empty"}
    assert_same_answers(items[0], plain(torchserve, "sentiment", TEXTS[0]))


@pytest.mark.parametrize("kserve_server", ["v2"], indirect=True)
def test_v2_bytes_holding_a_json_object_is_a_structured_input(kserve_server, torchserve):
    pair = {"text": "a", "text_pair": "b"}
    response = kserve(kserve_server, "sentiment", [pair, TEXTS[1]])
    assert response.status_code == 200
    expected = [post(torchserve, "sentiment", {"inputs": pair}).json(), plain(torchserve, "sentiment", TEXTS[1])]
    assert_same_answers(answers(kserve_server, response), expected)


@pytest.mark.parametrize("kserve_server", ["v1"], indirect=True)
def test_v1_explain_gives_one_explanation_per_instance(kserve_server):
    url = f"{kserve_server.inference_url}/v1/models/sentiment:explain"
    response = requests.post(url, json={"instances": TEXTS[:2]}, timeout=120)
    assert response.status_code == 200, response.text
    explanations = response.json()["explanations"]
    assert len(explanations) == 2
    assert [item["tokens"][0] for item in explanations] == ["i", "the"]
    assert all(len(item["tokens"]) == len(item["attributions"]) == len(item["offsets"]) for item in explanations)


@pytest.mark.parametrize("model", ["sentiment", "keyword_ner"])
def test_kserves_own_client_gets_the_plain_predictions_answers(kserve_server, torchserve, model, tmp_path):
    """KServe's InferenceRESTClient (its own venv: tests/kserve_client.py), v1 and v2."""
    client_python = REPO_ROOT / ".venv-kserve-client" / "bin" / "python"
    assert client_python.exists(), "the KServe client venv is missing: run `make kserve-client` (make test does)"
    texts, answers_file = tmp_path / "texts.json", tmp_path / "answers.json"
    texts.write_text(json.dumps(TEXTS), encoding="utf-8")
    result = subprocess.run(
        [str(client_python), str(REPO_ROOT / "tests" / "kserve_client.py"), kserve_server.inference_url, model,
         kserve_server.protocol, str(texts), str(answers_file)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(answers_file.read_text(encoding="utf-8"))
    assert_same_answers(served, [plain(torchserve, model, text) for text in TEXTS])
