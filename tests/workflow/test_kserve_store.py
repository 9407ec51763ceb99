"""hflabels kserve-store: the store layout and its config carry the model config over."""

from __future__ import annotations

import json

import yaml
from support import script

from hflabels.paths import LOG_CONFIG, TORCHSERVE_CONFIG
from hflabels.torchserve_config import read_properties

kserve_store_main = script("kserve-store")


def test_store_layout_carries_the_model_config_over(sentiment_model, tmp_path):
    config = tmp_path / "model-config.yaml"
    config.write_text(yaml.safe_dump({"minWorkers": 2, "maxWorkers": 3, "batchSize": 16, "maxBatchDelay": 7,
                                      "responseTimeout": 42, "handler": {"micro_batch_size": 8}}))  # fmt: skip
    output = tmp_path / "store"
    assert kserve_store_main(["--model", f"reviews={sentiment_model}", "--output", str(output), "--protocol", "v2",
                              "--config", str(config), "--storage-uri", "gs://bucket/reviews"]) == 0  # fmt: skip
    assert (output / "model-store" / "reviews.mar").exists()
    properties = read_properties(output / "config" / "config.properties")
    assert properties["service_envelope"] == "kservev2"
    assert properties["inference_address"] == "http://0.0.0.0:8085" and properties["enable_model_api"] == "false"
    pod_options = properties["vmargs"].split()
    assert "-Dlog4j.configurationFile=file:///mnt/models/config/log4j2.xml" in pod_options
    # The JVM options a plain start uses (C1 only, bounded heap) come along; only the logging path differs.
    shipped = read_properties(TORCHSERVE_CONFIG)["vmargs"].split()
    assert "-XX:TieredStopAtLevel=1" in shipped
    assert [o for o in pod_options if "log4j" not in o] == [o for o in shipped if "log4j" not in o]
    assert (output / "config" / "log4j2.xml").read_text() == (LOG_CONFIG).read_text()
    snapshot = json.loads(properties["model_snapshot"])
    assert snapshot["models"]["reviews"]["1.0"] == {
        "defaultVersion": True, "marName": "reviews.mar", "minWorkers": 2, "maxWorkers": 3,
        "batchSize": 1, "maxBatchDelay": 7, "responseTimeout": 42,
    }  # fmt: skip
    manifest = yaml.safe_load((output / "inferenceservice.yaml").read_text())
    container = manifest["spec"]["predictor"]["containers"][0]
    assert manifest["metadata"]["name"] == "reviews"
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "TS_SERVICE_ENVELOPE": "kservev2", "STORAGE_URI": "gs://bucket/reviews"
    }  # fmt: skip
    assert "<" not in (output / "inferenceservice.yaml").read_text()
