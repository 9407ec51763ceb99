"""The lab's command line: the product's dispatcher over the lab's tools."""

from __future__ import annotations

from collections.abc import Sequence

from hflabels.cli import CommandLine

TOOLS = {
    "bench": ("bench", "served throughput and latency against the in-process limit"),
    "serving-modes": ("serving_modes", "the serving modes side by side: classic, async worker, several workers"),
    "worker-split": ("worker_split", "the handler's in-process rate with the cores split between workers, interleaved"),
    "bench-peers": ("bench_peers", "this handler next to TorchServe's HF example and infinity-emb"),
    "bench-cache": ("bench_cache", "the response cache's speed-up on a Zipf-distributed workload"),
    "soak": ("soak", "sustained load: errors, latency and memory over time"),
    "accelerations": ("accelerations", "opt-in accelerations: speed and answer agreement"),
    "imbalance": ("imbalance", "the class-imbalance experiment: every strategy, calibrated or not"),
    "rare-class": ("rare_class", "a rare class that can be learned, at 20:1 and 100:1: every way of treating it"),
    "real-data": ("real_data", "the measured comparison on the real VADER corpora, baselines included"),
    "drift": ("drift", "the drift alarm on real domain shifts: false alarms, detection, power on mixes"),
    "calibration": ("calibration", "calibration on unseen data: every calibrator's test ECE, with its noise"),
    "guarantees": ("guarantees", "prediction sets, abstention and drift measured on the real VADER data"),
    "startup": ("startup", "several models started together: time until all are ready, cold and restarted"),
    "small-data": ("small_data", "training on a few sentences a label: the defaults against hand settings and TF-IDF"),
    "plots": ("plots", "draw the docs' result plots again from the committed results JSON"),
}

LAB = CommandLine(
    prog="python -m lab",
    package="lab.commands",
    commands=TOOLS,
    description="Measurement and experiment tools (run from the repository root; `make bench` and friends call them).",
)


def main(argv: Sequence[str] | None = None) -> int:
    return LAB.main(argv)
