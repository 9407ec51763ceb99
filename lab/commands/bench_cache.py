"""The response cache's speed-up on a Zipf-distributed workload: with and without, one run.

Results go to build/bench-cache/results.json; the figures are in the docs' performance pages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from hflabels.demo import model_or_demo
from hflabels.paths import BUILD, MODEL_CONFIG
from lab.benchmark import machine
from lab.cache_benchmark import measure_cache
from lab.load import mixed_inputs, word_stream
from lab.results import write_results


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="a sequence-classification folder (default: the demo model)")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG, help="TorchServe's config.properties")
    parser.add_argument("--distinct", type=int, default=100_000, help="distinct texts in the pool")
    parser.add_argument("--zipf", type=float, default=0.9, help="popularity exponent s (1 / rank**s)")
    parser.add_argument("--cache-mb", type=float, default=8.0, help="response cache size(s) to compare")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measurement")
    parser.add_argument("--output", type=Path, default=BUILD / "bench-cache", help="folder for the results")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the Zipf draws")


def run(args: argparse.Namespace) -> int:
    args.model_dir = model_or_demo(args.model_dir)
    args.output.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    texts = mixed_inputs(word_stream(args.seed), args.distinct, args.seed)
    print(f"machine: {machine()}\n{args.distinct} distinct texts, Zipf s={args.zipf}, cache {args.cache_mb} MB, "
          f"c={args.concurrency}")  # fmt: skip
    summary = measure_cache(args.model_dir, config, texts, args.output, args.zipf, args.cache_mb,
                            args.concurrency, args.duration, args.rounds, args.seed)  # fmt: skip
    summary["machine"] = machine()
    summary["workload"] = {"distinct": args.distinct, "zipf": args.zipf, "cache_mb": args.cache_mb,
                           "concurrency": args.concurrency, "duration": args.duration}  # fmt: skip
    print(f"hit rate {summary['hit_rate']:.3f} (evictions {summary['evictions']:.0f}); cached "
          f"{summary['cached']['throughput']:.1f} req/s vs uncached {summary['uncached']['throughput']:.1f} req/s: "
          f"x{summary['speedup']:.2f}")  # fmt: skip
    write_results(args.output / "results.json", summary)
    print(f"wrote {args.output / 'results.json'}")
    return 0
