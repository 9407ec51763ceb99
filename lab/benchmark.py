"""Measuring a model served by this handler against its own in-process speed, on this machine.

In one run, on the same inputs and model:
1. the in-process limit: tokenization plus the model's batched forward with no server, for several
   batchings (arrival order; sorted by length in batches of 8..64; every input padded to 128
   tokens), the handler's own runner, and the time of one input alone;
2. the served figures: the model archived and served by a real torchserve, driven by a
   closed-loop HTTP load (``lab.load``) at each concurrency, several rounds, medians reported;
3. throughput by input length, served and in-process, with the padding ratio the handler
   actually ran with (from its Prometheus counters).
A benchmark measures and reports: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from handler.api.request_parsing import RequestBody
from handler.api.settings import HandlerSettings
from handler.registry import build_runner
from hflabels.archiving import archive
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports, read_properties, write_properties
from hflabels.torchserve_control import Server, start, stop
from lab.cpu_split import CpuSplit, measure_cpu
from lab.load import median_run, served_run
from lab.prometheus import padding_ratio, token_counters

BUCKETS = (16, 64, 256, 512)


# ---- in-process limit --------------------------------------------------------------------------


def run_handler(runner: Any, texts: Sequence[str], chunk: int, sort: bool = False) -> float:
    """Inputs per second through the handler's own runner (parse, tokenize, forward, labels), in
    chunks of ``chunk`` one-input requests: arrival order is what a server at concurrency
    ``chunk`` can see at once; ``sort`` orders the whole workload by length first."""
    if sort:
        lengths = [len(ids) for ids in runner.tokenizer(list(texts), truncation=True)["input_ids"]]
        texts = [texts[i] for i in np.argsort(lengths, kind="stable")]
    started = time.perf_counter()
    for first in range(0, len(texts), chunk):
        requests = [runner.parse(RequestBody(text, None, True)) for text in texts[first : first + chunk]]
        runner.run(requests)
    return len(texts) / (time.perf_counter() - started)


def run_in_process(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int, order: str, max_length: int
) -> float:
    """Inputs per second for one pass: tokenization + forward + softmax, no server."""
    if order == "sorted":
        lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
        texts = [texts[i] for i in np.argsort(lengths, kind="stable")]
    padding = "max_length" if order == "padded128" else "longest"
    limit = 128 if order == "padded128" else max_length
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]), truncation=True, max_length=limit,
                padding=padding, return_tensors="pt",
            )  # fmt: skip
            torch.softmax(model(**batch)["logits"].float(), dim=-1).numpy()
    return len(texts) / (time.perf_counter() - started)


def in_process_limit(
    model: Any, tokenizer: Any, texts: Sequence[str], rounds: int, max_length: int, runner: Any | None = None
) -> dict[str, Any]:
    layouts = {"arrival, batches of 8": ("arrival", 8), "padded to 128, batches of 8": ("padded128", 8)}
    layouts.update({f"sorted, batches of {b}": ("sorted", b) for b in (8, 16, 32, 64)})
    run_in_process(model, tokenizer, texts[:64], 16, "sorted", max_length)  # warm-up
    results = {
        name: statistics.median(run_in_process(model, tokenizer, texts, b, order, max_length) for _ in range(rounds))
        for name, (order, b) in layouts.items()
    }
    # The limit is the best batching the model's own forward can have: the whole workload sorted.
    best = max((name for name in results if name.startswith("sorted")), key=results.__getitem__)
    found = {"layouts": results, "best_layout": best, "best": results[best]}
    if runner is not None:
        run_handler(runner, texts[:64], 32)  # warm-up
        for name, chunk, sort in (
            ("chunks_of_32", 32, False),
            ("chunks_of_16", 16, False),
            ("handler_sorted", 32, True),
        ):
            found[name] = statistics.median(run_handler(runner, texts, chunk, sort) for _ in range(rounds))
        results["handler, arrival chunks of 32 (a server's view at 32 clients)"] = found["chunks_of_32"]
        results["handler, arrival chunks of 16"] = found["chunks_of_16"]
        results["handler, sorted, chunks of 32"] = found["handler_sorted"]
    return found


def single_input_ms(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, pause: float = 0.0) -> float:
    """Median time of one input alone; ``pause`` seconds of idleness before each, as a lone client has."""
    times = []
    with torch.inference_mode():
        for text in texts:
            time.sleep(pause)
            started = time.perf_counter()
            batch = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
            torch.softmax(model(**batch)["logits"].float(), dim=-1).numpy()
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


# ---- the run -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import transformers
    from ts.version import __version__ as torchserve_version

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torchserve": torchserve_version,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def measure_in_process(args: argparse.Namespace, config: dict[str, Any], workloads: dict[str, Any]) -> dict[str, Any]:
    settings = HandlerSettings.from_mapping(config.get("handler"))
    # The served model's own runner and settings (dtype, quantization, compile, packing).
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    runner = build_runner(args.model_dir, settings, device)
    model = runner.model
    tokenizer, max_length = workloads["tokenizer"], workloads["max_length"]
    found: dict[str, Any] = {"precision": runner.policy.describe()}
    choice = getattr(runner, "precision", None)
    if choice is not None:
        found["dtype_auto"] = choice.describe()
        print(f"  {choice.describe()}")
    # The model's own forward runs in the precision the handler chose, so the limit is comparable.
    with runner.policy.forward_context():
        for variant in ("mixed", "long"):
            if workloads[variant]:
                found[variant] = in_process_limit(model, tokenizer, workloads[variant], args.rounds, max_length, runner)
        found["single_input_ms"] = single_input_ms(model, tokenizer, workloads["mixed"][:100], max_length)
        found["single_input_after_pause_ms"] = single_input_ms(
            model, tokenizer, workloads["mixed"][:100], max_length, 0.005
        )
        found["buckets"] = {
            n: in_process_limit(model, tokenizer, texts, 1, max_length)["best"]
            for n, texts in workloads["buckets"].items()
        }
    for name, value in found["mixed"]["layouts"].items():
        print(f"  {name:<64} {value:7.1f} inputs/s")
    alone, after_pause = found["single_input_ms"], found["single_input_after_pause_ms"]
    print(f"  one input alone: {alone:.1f} ms ({after_pause:.1f} ms after 5 ms idle)")
    return found


def serve_model(
    model_dir: Path,
    config: dict[str, Any],
    output: Path,
    name: str,
    worker_port: int | None = None,
    environment: dict[str, str] | None = None,
) -> Server:
    """Archive ``model_dir`` with ``config`` and serve it alone on free loopback ports (run folder
    output/run), with ``environment`` added to the server's."""
    stop(output / "run")
    output.mkdir(parents=True, exist_ok=True)
    (output / "model-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    store = output / "model_store"
    archive(model_dir, name, document=config, export_path=store)
    return start(loopback_properties(output, worker_port), store, [f"{name}={name}.mar"], output / "run",
                 environment=environment)  # fmt: skip


def loopback_properties(output: Path, worker_port: int | None = None) -> Path:
    """The shipped config.properties on free loopback ports, written to output/config.properties."""
    properties = config_with_free_ports(TORCHSERVE_CONFIG, output / "config.properties")
    if worker_port is not None:
        # Workers listen on /tmp/.ts.sock.<port>: servers running side by side need their own.
        values = read_properties(properties)
        values["initial_worker_port"] = str(worker_port)
        write_properties(properties, values)
    return properties


def measure_served(args: argparse.Namespace, config: dict[str, Any], workloads: dict[str, Any],
                   in_process: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    run_dir = args.output / "run"
    server = serve_model(args.model_dir, config, args.output, "bench")
    served: dict[str, Any] = {}
    buckets: dict[str, Any] = {}
    try:
        url, token = server.predictions_url("bench"), server.inference_token
        served_run(url, token, workloads["mixed"], 8, 3.0)  # warm-up
        for variant in ("mixed", "long"):
            if not workloads[variant]:
                continue
            served[variant] = {}
            for concurrency in args.concurrency:
                before = token_counters(server.metrics_url)
                runs, cpu = [], CpuSplit()
                for _ in range(args.rounds):
                    with measure_cpu(server.frontend_pid()) as split:
                        runs.append(served_run(url, token, workloads[variant], concurrency, args.duration))
                    cpu = cpu.plus(split)
                summary = median_run(runs)
                summary["padding_ratio"] = padding_ratio(before, token_counters(server.metrics_url))
                summary["cpu_ms_per_request"] = cpu.per_request_ms(summary["requests"])
                limits = in_process[variant]
                summary["ratio_to_in_process"] = round(summary["throughput"] / limits["best"], 3)
                summary["ratio_to_chunks_of_32"] = round(summary["throughput"] / limits["chunks_of_32"], 3)
                summary["ratio_to_handler_sorted"] = round(summary["throughput"] / limits["handler_sorted"], 3)
                served[variant][concurrency] = summary
                print(
                    f"  served {variant:<5} c={concurrency:<3} {summary['throughput']:7.1f} req/s  "
                    f"p50 {summary['p50_ms']:6.1f} ms  p99 {summary['p99_ms']:7.1f} ms  errors {summary['errors']}  "
                    f"padding {summary['padding_ratio']}  served/in-process {summary['ratio_to_in_process']:.2f}"
                )
                shares = summary["cpu_ms_per_request"]
                print(f"    CPU per request: client {shares['client']:.2f} ms, frontend {shares['frontend']:.2f} ms, "
                      f"workers {shares['workers']:.2f} ms; cores busy {shares['busy_share']:.2f}")  # fmt: skip
        for tokens, texts in workloads["buckets"].items():
            before = token_counters(server.metrics_url)
            run = served_run(url, token, texts, max(args.concurrency), args.duration)
            limit = in_process["buckets"][tokens]
            buckets[tokens] = {
                "served": run["throughput"],
                "in_process": limit,
                "ratio": round(run["throughput"] / limit, 3),
                "served_tokens_per_s": run["throughput"] * tokens,
                "errors": run["errors"],
                "padding_ratio": padding_ratio(before, token_counters(server.metrics_url)),
            }
            print(
                f"  ~{tokens:<3} tokens: served {run['throughput']:7.1f}/s ({run['throughput'] * tokens:7.0f} tokens/s)"
                f"  in-process {limit:7.1f}/s  ratio {run['throughput'] / limit:.2f}"
                f"  padding {buckets[tokens]['padding_ratio']}"
            )
    finally:
        stop(run_dir)
    return served, buckets


def report_targets(results: dict[str, Any]) -> None:
    """The issue's two bars, as figures (the benchmark reports; it does not fail)."""
    mixed = results["served"].get("mixed", {})
    single = results["in_process"]["single_input_ms"]
    if 32 in mixed:
        summary = mixed[32]
        print(f"c=32: served / in-process limit (model's own forward, sorted) = {summary['ratio_to_in_process']:.2f}"
              f" (bar: >= 0.85); served / the handler in-process: sorted {summary['ratio_to_handler_sorted']:.2f},"
              f" in arrival chunks of 32 {summary['ratio_to_chunks_of_32']:.2f}")  # fmt: skip
    if 1 in mixed:
        print(f"c=1: median {mixed[1]['p50_ms']:.1f} ms vs one input alone in-process {single:.1f} ms "
              f"(+{mixed[1]['p50_ms'] - single:.1f} ms; bar: +5 ms)")  # fmt: skip
