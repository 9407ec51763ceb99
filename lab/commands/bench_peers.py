"""This handler next to the servers users would pick instead, on one model, load and machine.

    python -m lab bench-peers --torchserve-example PATH/Transformer_handler_generalized.py

PATH is pytorch/serve's examples/Huggingface_Transformers folder (the torchserve package does not
ship its examples). infinity-emb runs from its own venv (`make infinity`); a peer that cannot start
is reported and skipped. Results: build/bench-peers/results.json and peers.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from hflabels.demo import model_or_demo
from hflabels.paths import BUILD, MODEL_CONFIG
from lab import peers
from lab.benchmark import machine
from lab.load import mixed_inputs, word_stream
from lab.plots import plot_peers
from lab.results import write_results

REFERENCE = "this handler, dtype float32"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="a sequence-classification folder (default: the demo model)")
    parser.add_argument("--torchserve-example", type=Path, help="pytorch/serve's Transformer_handler_generalized.py")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="client counts to measure")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measurement")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per round")
    parser.add_argument("--output", type=Path, default=BUILD / "bench-peers", help="folder for the results")
    parser.add_argument("--servers", nargs="+", help="measure only these (others keep their last results)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the generated texts")


def run(args: argparse.Namespace) -> int:
    # Absolute: the example handler reads it from its worker, which runs in another folder.
    args.model_dir = model_or_demo(args.model_dir).resolve()
    args.output.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(MODEL_CONFIG.read_text(encoding="utf-8")) or {}
    texts = mixed_inputs(word_stream(args.seed), 512, args.seed)
    sample = texts[:64]
    exact = {**config, "handler": {**config.get("handler", {}),
                                   "loading": {**config.get("handler", {}).get("loading", {}), "dtype": "float32"}}}
    # Each server at its default and at its fastest precision option; every answer is compared
    # with this handler's float32 answers (the exact reference).
    starters: dict[str, Any] = {
        "this handler": lambda folder: peers.serve_ours(args.model_dir, config, folder),
        REFERENCE: lambda folder: peers.serve_ours(args.model_dir, exact, folder),
        "infinity-emb": lambda folder: peers.serve_infinity(args.model_dir, folder),
        "infinity-emb --dtype bfloat16": lambda folder: peers.serve_infinity(args.model_dir, folder, dtype="bfloat16"),
    }
    if args.torchserve_example is not None:
        starters["TorchServe HF example"] = lambda folder: peers.serve_torchserve_example(
            args.model_dir, args.torchserve_example, folder
        )
    else:
        print("TorchServe's HF example skipped: pass --torchserve-example (pytorch/serve's examples folder)")
    results: dict[str, Any] = {"machine": machine(), "versions": peers.versions(), "model": str(args.model_dir),
                               "servers": {}}  # fmt: skip
    previous = args.output / "results.json"
    if args.servers and previous.exists():
        results["servers"] = json.loads(previous.read_text(encoding="utf-8"))["servers"]
    for name, starter in starters.items():
        if args.servers and name not in args.servers:
            continue
        folder = args.output / name.replace(" ", "-")
        peers.clean(folder)
        try:
            peer = starter(folder)
        except Exception as error:
            print(f"{name}: could not start ({str(error)[:200]})")
            results["servers"][name] = {"error": str(error)[:500]}
            continue
        try:
            found = peers.measure_peer(peer, texts, args.concurrency, args.rounds, args.duration, sample)
        finally:
            peer.stop()
        results["servers"][name] = found
        for concurrency in args.concurrency:
            summary = found[str(concurrency)]
            print(f"{name:<30} c={concurrency:<3} {summary['throughput']:7.1f} req/s  p50 {summary['p50_ms']:6.1f} ms"
                  f"  errors {summary['errors']}")  # fmt: skip
    reference = results["servers"].get(REFERENCE, {})
    for name, found in results["servers"].items():
        if "labels" in found and "labels" in reference and name != REFERENCE:
            agree = sum(a == b for a, b in zip(found["labels"], reference["labels"])) / len(sample)
            found["label_agreement_with_float32"] = agree
            print(f"{name:<30} top label equal to this handler's float32 one on {agree:.0%} of {len(sample)} texts")
    results = write_results(args.output / "results.json", results)
    plot_peers(results, args.concurrency, args.output / "peers.png")
    print(f"wrote {args.output / 'results.json'} and {args.output / 'peers.png'}")
    return 0
