"""The serving-modes comparison serves each mode with exactly the keys it names changed."""

from __future__ import annotations

import copy

import yaml

from hflabels.paths import MODEL_CONFIG
from lab.serving_modes import ENV_PREFIX, candidate_modes, environment_of, with_overrides


def test_each_mode_changes_its_keys_in_the_shipped_config_and_nothing_else():
    shipped = yaml.safe_load(MODEL_CONFIG.read_text())
    before = copy.deepcopy(shipped)
    for overrides in candidate_modes(cores=4).values():
        changed = with_overrides(shipped, overrides)
        for key, value in overrides.items():
            if key.startswith(ENV_PREFIX):
                continue
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


def test_a_modes_environment_goes_to_its_server_and_never_into_the_config():
    spin, workers_spin = [keys for name, keys in candidate_modes(cores=2).items() if "OpenMP" in name]
    assert environment_of(spin) == environment_of(workers_spin) == {"GOMP_SPINCOUNT": "10000"}
    assert with_overrides({"handler": {}}, spin) == {"handler": {}}
    assert with_overrides({"handler": {}}, workers_spin) == {"handler": {}, "minWorkers": 2, "maxWorkers": 2}
    assert environment_of({"maxBatchDelay": 3}) == {}


def test_the_floor_handler_answers_every_input_at_once_and_loads_on_none():
    from lab.torchserve_floor import FLOOR_HANDLER

    namespace: dict = {}
    exec(compile(FLOOR_HANDLER, "floor_handler.py", "exec"), namespace)  # noqa: S102 (our own constant)
    handle = namespace["handle"]
    assert handle(None, object()) is None  # TorchServe's load-time call of a function entry point
    answers = handle([{"body": b"a"}, {"body": b"b"}, {"body": b"c"}], object())
    assert len(answers) == 3 and all(yaml.safe_load(answer) == {"label": "floor", "score": 1.0} for answer in answers)


def test_the_floor_is_a_row_of_its_own_and_never_the_best_mode():
    from lab.serving_modes import best_mode, lone_request_overhead
    from lab.tables import lone_request_table, serving_modes_table
    from lab.torchserve_floor import FLOOR_MODE

    run = {"throughput": 900.0, "ratio_to_in_process": 3.3, "p50_ms": 4.0, "p99_ms": 6.0, "errors": 0,
           "cpu_ms_per_request": {"client": 0.5, "frontend": 1.0, "workers": 0.2}}  # fmt: skip
    classic = {**run, "throughput": 190.0, "ratio_to_in_process": 0.69, "p50_ms": 16.6}
    found = {"classic": {"closed": {"1": classic, "32": classic}, "open": {}},
             FLOOR_MODE: {"floor": True, "closed": {"1": run, "32": run}, "open": {}}}  # fmt: skip
    assert best_mode(found) == "classic"
    overhead = lone_request_overhead(found, 10.3)
    assert overhead == {"classic": 6.3}
    document = {"modes": found, "in_process": {"single_input_ms": 10.3}, "lone_request_overhead_ms": overhead,
                "floor_lone_request_p50_ms": 4.0}  # fmt: skip
    lone = lone_request_table(document)
    assert "beyond TorchServe's floor of 4.0 ms" in lone and "| +2.3 |" in lone
    rows = [line for line in serving_modes_table(document).splitlines() if line.startswith(f"| {FLOOR_MODE}")]
    assert rows and all("| - |" in row for row in rows)  # no share of the model's rate for the floor


def test_a_model_with_a_drift_reference_is_also_served_without_it():
    from lab.serving_modes import NO_DRIFT_MONITOR

    assert NO_DRIFT_MONITOR not in candidate_modes(cores=2, config={"handler": {"monitoring": None}})
    config = {"batchSize": 32, "handler": {"monitoring": {"reference": {"examples": 10}, "drift_window": 200}}}
    modes = candidate_modes(cores=2, config=config)
    changed = with_overrides(config, modes[NO_DRIFT_MONITOR])
    assert changed["handler"]["monitoring"] == {"reference": None, "drift_window": 200}
    assert config["handler"]["monitoring"]["reference"] == {"examples": 10}, "the base config is left alone"
