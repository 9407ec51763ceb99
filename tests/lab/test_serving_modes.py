"""The serving-modes comparison serves each mode with exactly the keys it names changed."""

from __future__ import annotations

import copy

import yaml

from hflabels.paths import MODEL_CONFIG
from lab.serving_modes import candidate_modes, with_overrides


def test_each_mode_changes_its_keys_in_the_shipped_config_and_nothing_else():
    shipped = yaml.safe_load(MODEL_CONFIG.read_text())
    before = copy.deepcopy(shipped)
    for overrides in candidate_modes(cores=4).values():
        changed = with_overrides(shipped, overrides)
        for key, value in overrides.items():
            target = changed
            for part in key.split("."):
                target = target[part]
            assert target == value, key
    # Nested keys land where the handler reads them, even under a group the shipped file leaves out
    # or null (the two-worker mode once ran with torch's default threads for this reason).
    changed = with_overrides({"handler": {"loading": None}}, {"handler.loading.torch_num_threads": 2})
    assert changed == {"handler": {"loading": {"torch_num_threads": 2}}}
    assert with_overrides({}, {"handler.batching.max_batch_requests": 8}) == {
        "handler": {"batching": {"max_batch_requests": 8}}
    }
    assert shipped == before  # the shipped config is copied, never changed
