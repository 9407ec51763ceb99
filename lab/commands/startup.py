"""Several models started together: time until every one is ready, cold and after a restart.

    python -m lab startup [--model-dir DIR] [--models 1 3 5] [--distinct] [--workers 2] [--output build/startup]

For each count, N archives of the model are served by one torchserve started with the shipped
settings; the time from `torchserve --start` until every model has a READY worker is measured, the
server is stopped and started again (the load-time timings are then remembered), and measured
again. With --distinct each archive gets its own micro_batch_size, so each is a model the machine
has not timed (the worst case: every worker times in turn). The load cache starts empty for each
count (its own HFLABELS_CACHE_DIR). Each worker's "load measurements:", "forward passes:" and
"dtype auto:" lines are kept. Writes build/startup/results.json. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from hflabels.paths import BUILD, MODEL_CONFIG, TORCHSERVE_CONFIG


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="a save_pretrained folder (default: the demo model)")
    parser.add_argument("--models", type=int, nargs="+", default=[1, 3, 5], help="how many archives at once")
    parser.add_argument("--distinct", action="store_true", help="a different micro_batch_size per archive")
    parser.add_argument("--workers", type=int, default=1, help="workers of each model (minWorkers/maxWorkers)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every model")
    parser.add_argument("--output", type=Path, default=BUILD / "startup", help="archives, runs and results.json")


def timed_start(store: Path, names: list[str], output: Path, timeout: float) -> tuple[float, list[str]]:
    from hflabels.torchserve_config import config_with_free_ports
    from hflabels.torchserve_control import start, stop

    run_dir = output / "run"
    stop(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    properties = config_with_free_ports(TORCHSERVE_CONFIG, output / "config.properties")
    started = time.perf_counter()
    server = start(properties, store, [f"{name}={name}.mar" for name in names], run_dir, timeout=timeout)
    seconds = time.perf_counter() - started
    lines = [line.split("]", 1)[-1].strip() for line in server.log_lines("model_log.log")
             if any(mark in line for mark in ("load measurements:", "forward passes:", "dtype auto:",
                                              "float32 linear layers:"))]  # fmt: skip
    stop(run_dir)
    return seconds, lines


def run(args: argparse.Namespace) -> int:
    from hflabels.archiving import archive
    from hflabels.demo import model_or_demo
    from lab.results import write_results

    model_dir = model_or_demo(args.model_dir)
    shipped = yaml.safe_load(MODEL_CONFIG.read_text(encoding="utf-8"))
    results: dict[str, Any] = {"model": str(model_dir), "distinct": args.distinct, "workers": args.workers, "runs": {}}
    for count in args.models:
        # Absolute: the workers run in their models' folders, and read HFLABELS_CACHE_DIR there.
        output = args.output.resolve() / f"{count}-models"
        if output.exists():
            shutil.rmtree(output)
        store = output / "model_store"
        names = [f"model{i}" for i in range(count)]
        for i, name in enumerate(names):
            document = yaml.safe_load(yaml.safe_dump(shipped))
            document.update(minWorkers=args.workers, maxWorkers=args.workers)
            if args.distinct:
                document["handler"]["batching"]["micro_batch_size"] = 32 - i
            archive(model_dir, name, document=document, export_path=store)
        # A cache of this count's own: the first start is cold.
        os.environ["HFLABELS_CACHE_DIR"] = str(output / "cache")
        cold, cold_lines = timed_start(store, names, output, args.timeout)
        warm, warm_lines = timed_start(store, names, output, args.timeout)
        results["runs"][str(count)] = {"cold_seconds": round(cold, 1), "restart_seconds": round(warm, 1),
                                       "cold_log": cold_lines, "restart_log": warm_lines}  # fmt: skip
        print(f"{count} model(s){' (distinct)' if args.distinct else ''}: all ready {cold:.1f} s after start; "
              f"after a restart {warm:.1f} s", flush=True)
    workers = "" if args.workers == 1 else f"-{args.workers}-workers"
    path = args.output / f"results{'-distinct' if args.distinct else ''}{workers}.json"
    write_results(path, results)
    print(f"wrote {path}")
    return 0
