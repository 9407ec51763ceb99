"""`hflabels bench --set`: dotted keys reach nested groups, and the result is a valid config."""

from __future__ import annotations

import argparse

from handler.api.settings import Backend, HandlerSettings
from hflabels.paths import MODEL_CONFIG
from lab.commands.bench import model_config


def test_set_takes_dotted_keys_into_nested_groups():
    sets = ["batchSize=16", "handler.loading.backend=openvino", "handler.batching.micro_batch_size=8",
            "handler.batching.max_batch_tokens=1024"]  # fmt: skip
    document = model_config(argparse.Namespace(config=MODEL_CONFIG, set=sets))
    assert document["batchSize"] == 16
    assert document["handler"]["loading"] == {"backend": "openvino"}
    # The shipped batching group keeps its other keys.
    batching = document["handler"]["batching"]
    assert batching["max_batch_tokens"] == 1024 and "packed_forward" in batching
    settings = HandlerSettings.from_mapping(document["handler"])
    assert settings.loading.backend is Backend.OPENVINO and settings.batching.micro_batch_size == 8
