"""The handler's in-process rate when the cores are split between workers, in interleaved rounds.

    python -m lab worker-split [--model-dir DIR] [--rounds 5] [--output build/worker-split]

The served modes are compared with "the handler's own in-process rate": one process on every
core's thread, one-input requests in arrival chunks of 32. Two workers of one thread each see
another machine: each runs its own batches (about 16 requests each at 32 clients) on its own core,
at the same time as the other. So each layout runs here as processes of the handler's own runner
(the shipped model-config), all loaded first and then measured in turn, round after round, so
that a slow minute of the machine falls on every layout alike:

- one process on all threads, chunks of 32 (the denominator of the served ratios);
- one process on all threads, chunks of 16;
- N processes of (threads / N) threads each, chunks of 32 / N, running at once (their rates added).

Writes build/worker-split/results.json. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
from pathlib import Path
from typing import Any

from hflabels.paths import BUILD

CLIENTS = 32


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="a sequence-classification folder (default: the demo model)")
    parser.add_argument("--workers", type=int, default=2, help="how many processes split the cores")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians reported)")
    parser.add_argument("--inputs", type=int, default=512, help="distinct mixed inputs")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the generated texts")
    parser.add_argument("--output", type=Path, default=BUILD / "worker-split", help="folder for results.json")


def _process(model_dir: str, threads: int, chunk: int, inputs: int, seed: int, orders: Any, rates: Any) -> None:
    """One process: the handler's runner on ``threads`` threads; a rate for each order, until None."""
    import torch
    import yaml

    from handler.api.settings import HandlerSettings
    from handler.registry import build_runner
    from hflabels.paths import MODEL_CONFIG
    from lab.benchmark import run_handler
    from lab.load import mixed_inputs, word_stream

    torch.set_num_threads(threads)
    settings = HandlerSettings.from_mapping(yaml.safe_load(MODEL_CONFIG.read_text(encoding="utf-8"))["handler"])
    runner = build_runner(Path(model_dir), settings, torch.device("cpu"))
    torch.set_num_threads(threads)  # build_runner divides nothing here (one worker), but keep it explicit
    texts = mixed_inputs(word_stream(seed), inputs, seed)
    run_handler(runner, texts[:64], chunk)  # warm-up
    rates.put(runner.policy.describe())
    while orders.get() is not None:
        rates.put(run_handler(runner, texts, chunk))


def run(args: argparse.Namespace) -> int:
    import torch

    from hflabels.demo import model_or_demo
    from lab.benchmark import machine
    from lab.results import write_results

    model_dir = str(model_or_demo(args.model_dir))
    threads = torch.get_num_threads()
    share = max(threads // args.workers, 1)
    layouts = {
        f"1 process x {threads} threads, chunks of {CLIENTS}": [(threads, CLIENTS)],
        f"1 process x {threads} threads, chunks of {CLIENTS // args.workers}": [(threads, CLIENTS // args.workers)],
        f"{args.workers} processes x {share} thread{'s' if share > 1 else ''}, chunks of {CLIENTS // args.workers}, "
        "at once": [(share, CLIENTS // args.workers)] * args.workers,
    }  # fmt: skip
    spawn = multiprocessing.get_context("spawn")
    live: dict[str, list[tuple[Any, Any, Any]]] = {}
    precision = None
    for name, specs in layouts.items():
        live[name] = []
        for process_threads, chunk in specs:
            orders, rates = spawn.Queue(), spawn.Queue()
            process = spawn.Process(target=_process, args=(model_dir, process_threads, chunk, args.inputs, args.seed,
                                                           orders, rates))  # fmt: skip
            process.start()
            precision = rates.get(timeout=900)
            live[name].append((process, orders, rates))
    found: dict[str, list[float]] = {name: [] for name in layouts}
    for round_index in range(args.rounds):
        for name, processes in live.items():
            for _, orders, _ in processes:
                orders.put(round_index)
            found[name].append(sum(rates.get(timeout=900) for _, _, rates in processes))
        print(f"round {round_index + 1}: " + ", ".join(f"{found[name][-1]:.1f}" for name in layouts), flush=True)
    for processes in live.values():
        for process, orders, _ in processes:
            orders.put(None)
            process.join(timeout=60)
    medians = {name: round(statistics.median(rates), 1) for name, rates in found.items()}
    for name, value in medians.items():
        print(f"  {name:<56} {value:7.1f} inputs/s  (rounds: {', '.join(f'{r:.1f}' for r in found[name])})")
    results = {"machine": machine(), "model": model_dir, "precision": precision, "workers": args.workers,
               "rounds": {name: [round(r, 1) for r in rates] for name, rates in found.items()},
               "medians": medians}  # fmt: skip
    path = args.output / "results.json"
    write_results(path, results)
    print(f"wrote {path}")
    return 0
