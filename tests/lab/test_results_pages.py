"""The docs' results pages and the README's headline are drawn from the committed results JSON,
and every JSON says where and when it was measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import tables
from lab.results import vector_units, with_provenance

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda path: path.name)
def test_every_results_file_says_where_and_when_it_was_measured(path):
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document.get("measured_at", "")[:4] == "2026", "measured_at"
    assert document.get("git_commit"), "git_commit"
    assert document.get("machine"), "machine"
    for key in ("model", "model_dir"):
        assert not str(document.get(key, "")).startswith("/"), f"{key} names a machine's absolute path"
    assert "date not recorded" not in tables.provenance(document)


def test_every_results_page_renders_from_the_committed_json():
    def load(name):
        return json.loads((RESULTS / name).read_text(encoding="utf-8"))

    bench = tables.bench_tables(load("bench-results.json"))
    assert "| mixed | 32 |" in bench and "in-process limit" in bench
    assert "| this handler |" in tables.peers_headline(load("bench-peers-results.json"))
    accelerations = tables.accelerations_table(load("accelerations-amd.json"))
    assert accelerations.count("\n") == len(load("accelerations-amd.json")["variants"]) + 1
    assert "| movies |" in tables.real_data_table(load("real-data-results.json"))
    guarantees = load("guarantees-results.json")
    assert "| tweets |" in tables.drift_table(guarantees) and "| lac 0.9 |" in tables.coverage_table(guarantees)
    assert "| none |" in tables.imbalance_table(load("imbalance.json"))
    assert "102052" in tables.soak_table(load("soak.json"))
    assert "Hit rate" in tables.cache_table(load("bench-cache-results.json"))
    split = tables.worker_split_table(load("worker-split-zen5.json"))
    assert "| 2 processes x 1 thread, chunks of 16, at once |" in split and "| 1.00 |" in split
    startup = tables.startup_table(load("startup.json"))
    assert "| 1 | archives of one model |" in startup and "| 5 |" in startup


def test_the_readmes_headline_is_the_peers_json_as_the_docs_render_it():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    document = json.loads((RESULTS / "bench-peers-results.json").read_text(encoding="utf-8"))
    assert tables.peers_headline(document) in readme, "README's headline differs from bench-peers-results.json"
    assert document["measured_at"][:10] in readme


def test_results_are_written_with_a_date_a_commit_a_machine_and_a_relative_model():
    stamped = with_provenance({"model": str(REPO / "build" / "movie-model"), "throughput": 1.0})
    assert stamped["model"] == "build/movie-model"
    assert stamped["measured_at"].endswith("+00:00") and stamped["machine"]["cores"]
    assert stamped["git_commit"] is None or len(stamped["git_commit"]) >= 7
    outside = with_provenance({"model": "/somewhere/else/my-model"})
    assert outside["model"] == "my-model"
    # The vector units name the CPU class (two "AMD EPYC" machines serve different precisions).
    assert stamped["machine"]["units"] == vector_units()
    assert with_provenance({"machine": {"cpu": "X"}})["machine"] == {"cpu": "X", "units": vector_units()}
    assert "X (AMX)" in tables.provenance({"machine": {"cpu": "X", "units": "AMX"}})
    assert vector_units(frozenset({"avx2", "avx512f", "avx512_bf16"})) == "AVX512_BF16"
    assert vector_units(frozenset({"avx2", "fma"})) == "AVX2 only"
