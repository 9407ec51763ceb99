"""Served throughput and latency, measured against the model's in-process speed, in one run.

Results go to build/bench/results.json and a plot, build/bench/bench.png; the figures and the
method are in the docs' performance pages.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from hflabels.demo import model_or_demo
from hflabels.paths import BUILD, MODEL_CONFIG
from lab.benchmark import BUCKETS, machine, measure_in_process, measure_served, report_targets
from lab.load import inputs_of_tokens, mixed_inputs, word_stream
from lab.plots import plot_benchmark
from lab.results import write_results


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="a sequence-classification folder (default: the demo model)")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG, help="TorchServe's config.properties")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override model-config.yaml: batchSize=32, handler.micro_batch_size=8, ...",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="client counts to measure")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measurement (medians reported)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per served round")
    parser.add_argument("--inputs", type=int, default=512, help="distinct mixed inputs")
    parser.add_argument("--no-long", action="store_true", help="skip the near-max_length variant")
    parser.add_argument("--no-buckets", action="store_true", help="skip the length buckets")
    parser.add_argument("--output", type=Path, default=BUILD / "bench", help="folder for the results")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the generated texts")


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    document = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        # A dotted key names nested mappings: handler.loading.backend=openvino.
        *parents, name = key.split(".")
        target = document
        for parent in parents:
            target = target.setdefault(parent, {})
        target[name] = yaml.safe_load(value)
    return document


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    args.model_dir = model_or_demo(args.model_dir)
    args.output.mkdir(parents=True, exist_ok=True)
    config = model_config(args)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, local_files_only=True)
    max_length = min(int((config.get("handler") or {}).get("max_length", 512)), tokenizer.model_max_length)
    words = word_stream(args.seed)
    workloads = {
        "tokenizer": tokenizer,
        "max_length": max_length,
        "mixed": mixed_inputs(words, args.inputs, args.seed),
        "long": [] if args.no_long else inputs_of_tokens(words, tokenizer, max_length, 64, args.seed),
        "buckets": {}
        if args.no_buckets
        else {n: inputs_of_tokens(words, tokenizer, n, 64, args.seed + n) for n in BUCKETS},
    }
    results: dict[str, Any] = {"machine": machine(), "model": str(args.model_dir), "model_config": config}
    results["max_length"] = max_length
    print(f"machine: {results['machine']}\nin-process limit (no server)...")
    results["in_process"] = measure_in_process(args, config, workloads)
    print("served through torchserve...")
    results["served"], results["buckets"] = measure_served(args, config, workloads, results["in_process"])
    report_targets(results)
    results = write_results(args.output / "results.json", results)
    plot_benchmark(results, args.output / "bench.png")
    print(f"wrote {args.output / 'results.json'} and {args.output / 'bench.png'}")
    return 0
