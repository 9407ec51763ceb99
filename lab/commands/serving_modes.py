"""The serving modes side by side: classic TorchServe batching, a longer window, the async worker
mode (the handler batches when the model is free) and several workers with fewer threads each, and
TorchServe's own floor (a handler that answers at once) under the same frontend settings.

Results: build/serving-modes/results.json (the docs' performance page draws its table from the
copy in docs/results/serving-modes.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hflabels.demo import model_or_demo
from hflabels.paths import BUILD, MODEL_CONFIG
from lab.benchmark import machine, measure_in_process
from lab.commands.bench import model_config
from lab.load import mixed_inputs, word_stream
from lab.results import write_results
from lab.serving_modes import best_mode, candidate_modes, lone_request_overhead, measure_modes
from lab.torchserve_floor import FLOOR_MODE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="a sequence-classification folder (default: the demo model)")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG, help="the model-config.yaml of every mode")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override the base model-config.yaml (handler.loading.dtype=float32)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128], help="closed-loop clients")
    parser.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.8, 0.95],
                        help="open-loop Poisson arrival rates, as shares of the in-process rate")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians reported)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per round")
    parser.add_argument("--inputs", type=int, default=512, help="distinct mixed inputs")
    parser.add_argument("--modes", nargs="+", help="only the modes whose names start with these words")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="leave out TorchServe's floor (a handler that answers at once, same frontend settings)")
    parser.add_argument("--output", type=Path, default=BUILD / "serving-modes", help="folder for the results")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the generated texts")


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    args.model_dir = model_or_demo(args.model_dir)
    args.output.mkdir(parents=True, exist_ok=True)
    config = model_config(args)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, local_files_only=True)
    max_length = min(int((config.get("handler") or {}).get("max_length", 512)), tokenizer.model_max_length)
    texts = mixed_inputs(word_stream(args.seed), args.inputs, args.seed)
    modes = candidate_modes(config=config)
    if args.modes:
        modes = {name: keys for name, keys in modes.items() if any(name.startswith(word) for word in args.modes)}
    results: dict[str, Any] = {"machine": machine(), "model": str(args.model_dir), "model_config": config}
    print(f"machine: {results['machine']}\nin-process (no server)...")
    args.no_long, args.no_buckets = True, True
    workloads = {"tokenizer": tokenizer, "max_length": max_length, "mixed": texts, "long": [], "buckets": {}}
    in_process = measure_in_process(args, config, workloads)
    handler_rate = in_process["mixed"]["chunks_of_32"]
    results["in_process"] = {
        "precision": in_process.get("dtype_auto", in_process["precision"]),
        "model_best_sorted": in_process["mixed"]["best"],
        "handler_chunks_of_32": handler_rate,
        "single_input_ms": in_process["single_input_ms"],
    }
    print(f"served, {len(modes)} modes in interleaved rounds...")
    found = measure_modes(args.model_dir, config, texts, handler_rate, args.output, args.concurrency, args.loads,
                          args.rounds, args.duration, modes, args.floor)  # fmt: skip
    results["modes"] = found
    if args.floor and "1" in found[FLOOR_MODE]["closed"]:
        # What TorchServe and the client cost a lone request whatever the handler does.
        results["floor_lone_request_p50_ms"] = found[FLOOR_MODE]["closed"]["1"]["p50_ms"]
        print(f"  one client, {FLOOR_MODE}: p50 {results['floor_lone_request_p50_ms']:.1f} ms")
    results["lone_request_overhead_ms"] = lone_request_overhead(found, in_process["single_input_ms"])
    results["best_at_32_clients"] = best_mode(found) if "32" in next(iter(found.values()))["closed"] else None
    for name, extra in results["lone_request_overhead_ms"].items():
        print(f"  one client, {name}: +{extra:.1f} ms over one input in-process")
    write_results(args.output / "results.json", results)
    print(f"wrote {args.output / 'results.json'}")
    return 0
