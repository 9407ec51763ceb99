#!/usr/bin/env python3
"""`make bench`: served throughput and latency, measured against the model's in-process speed.

In one run, on the same inputs and model:
1. the in-process limit: tokenization plus the model's batched forward with no server, for several
   batchings (arrival order; sorted by length in batches of 8..64; every input padded to 128
   tokens), and the time of one input alone;
2. the served figures: the model archived with scripts/archive.py and served by a real torchserve,
   driven by a closed-loop HTTP load (keep-alive connections, one per client) at each concurrency,
   several rounds, medians reported;
3. throughput by input length (about 16, 64, 256 and 512 tokens), served and in-process, with the
   padding ratio the handler actually ran with (from its metrics).
Results go to build/bench/results.json and a plot, build/bench/bench.png. A benchmark measures and
reports: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import archive
import demo
import numpy as np
import requests
import torch
import yaml
from torchserve_control import Server, config_with_free_ports, start, stop

from handler.registry import build_runner
from handler.api.request_parsing import RequestBody
from handler.api.settings import HandlerSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = REPO_ROOT / "build" / "bench"
BUCKETS = (16, 64, 256, 512)


# ---- inputs ------------------------------------------------------------------------------------


def word_stream(seed: int) -> list[str]:
    """English words from the demo data, in a seeded order, to cut inputs of any length from."""
    sentences = []
    for name in ("train.csv", "test.csv"):
        lines = (REPO_ROOT / "data" / "sentiment" / name).read_text(encoding="utf-8").splitlines()[1:]
        sentences += [line.rsplit(",", 1)[0].strip('"') for line in lines]
    random.Random(seed).shuffle(sentences)
    return " ".join(sentences).split()


def mixed_inputs(words: list[str], count: int, seed: int, low: int = 5, high: int = 60) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        length = rng.randint(low, high)
        start = rng.randrange(0, len(words) - length)
        texts.append(" ".join(words[start : start + length]))
    return texts


def inputs_of_tokens(words: list[str], tokenizer: Any, tokens: int, count: int, seed: int) -> list[str]:
    """Texts of about ``tokens`` tokens each (special tokens included)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        start = rng.randrange(0, len(words) // 2)
        length = max(1, tokens // 2)
        while True:
            text = " ".join(words[start : start + length])
            have = len(tokenizer(text)["input_ids"])
            if have >= tokens or start + length >= len(words):
                break
            length += max(1, (tokens - have) // 2)
        ids = tokenizer(text, truncation=True, max_length=tokens)["input_ids"]
        texts.append(tokenizer.decode(ids, skip_special_tokens=True))
    return texts


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
            torch.softmax(model(**batch).logits, dim=-1).numpy()
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
            torch.softmax(model(**batch).logits, dim=-1).numpy()
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


# ---- served load ---------------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 response: (status, whether the connection stays open); two awaits, no parsing library."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep_alive = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
    await reader.readexactly(length)
    return status, keep_alive


async def _closed_loop(
    url: str, token: str | None, bodies: Sequence[bytes], concurrency: int, duration: float
) -> dict[str, Any]:
    target = urlparse(url)
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.hostname}:{target.port}\r\n"
        f"Content-Type: application/json\r\n" + (f"Authorization: Bearer {token}\r\n" if token else "")
    ).encode()
    latencies: list[float] = []
    statuses: list[int] = []
    timeline: list[tuple[float, int]] = []
    counter = iter(range(10**9))
    deadline = time.perf_counter() + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        while time.perf_counter() < deadline:
            body = bodies[next(counter) % len(bodies)]
            started = time.perf_counter()
            try:
                writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
                status, keep_alive = await _read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                status, keep_alive = 0, False  # 0: no HTTP answer at all
            finished = time.perf_counter()
            latencies.append(finished - started)
            statuses.append(status)
            timeline.append((finished, status))
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(target.hostname, target.port)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    milliseconds = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p90_ms": float(np.percentile(milliseconds, 90)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "errors": sum(1 for status in statuses if status != 200),
        # Raw material for callers that aggregate runs (soak.py); not written to results.
        "latencies_ms": milliseconds,
        "timeline": timeline,
    }


def served_run(url: str, token: str | None, texts: Sequence[str], concurrency: int, duration: float) -> dict[str, Any]:
    bodies = [json.dumps({"inputs": text}).encode() for text in texts]
    return asyncio.run(_closed_loop(url, token, bodies, concurrency, duration))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {key: statistics.median(run[key] for run in runs) for key in ("throughput", "p50_ms", "p90_ms", "p99_ms")}
    summary["errors"] = sum(run["errors"] for run in runs)
    summary["requests"] = sum(run["requests"] for run in runs)
    summary["rounds"] = [round(run["throughput"], 1) for run in runs]
    return summary


def token_counters(metrics_url: str) -> tuple[float, float]:
    """(tokens fed, tokens computed with padding) so far, from the handler's Prometheus counters."""
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for name in ("TokensTotal", "PaddedTokensTotal"):
            if line.startswith(name + "{"):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values.get("TokensTotal", 0.0), values.get("PaddedTokensTotal", 0.0)


def padding_ratio(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    real, padded = after[0] - before[0], after[1] - before[1]
    return None if padded <= 0 else round(1 - real / padded, 4)


# ---- the run -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a sequence-classification folder (default: the demo model)")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "model-config.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override model-config.yaml: batchSize=32, handler.micro_batch_size=8, ...",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per served round")
    parser.add_argument("--inputs", type=int, default=512, help="distinct mixed inputs")
    parser.add_argument("--no-long", action="store_true", help="skip the near-max_length variant")
    parser.add_argument("--no-buckets", action="store_true", help="skip the length buckets")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--seed", type=int, default=1234)
    return parser.parse_args(argv)


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    document = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        parsed = yaml.safe_load(value)
        if key.startswith("handler."):
            document.setdefault("handler", {})[key.split(".", 1)[1]] = parsed
        else:
            document[key] = parsed
    return document


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
        "cores": __import__("os").cpu_count(),
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
    found: dict[str, Any] = {}
    for variant in ("mixed", "long"):
        if workloads[variant]:
            found[variant] = in_process_limit(model, tokenizer, workloads[variant], args.rounds, max_length, runner)
    found["single_input_ms"] = single_input_ms(model, tokenizer, workloads["mixed"][:100], max_length)
    found["single_input_after_pause_ms"] = single_input_ms(
        model, tokenizer, workloads["mixed"][:100], max_length, 0.005
    )
    found["buckets"] = {
        n: in_process_limit(model, tokenizer, texts, 1, max_length)["best"] for n, texts in workloads["buckets"].items()
    }
    for name, value in found["mixed"]["layouts"].items():
        print(f"  {name:<64} {value:7.1f} inputs/s")
    alone, after_pause = found["single_input_ms"], found["single_input_after_pause_ms"]
    print(f"  one input alone: {alone:.1f} ms ({after_pause:.1f} ms after 5 ms idle)")
    return found


def serve_model(model_dir: Path, config: dict[str, Any], output: Path, name: str) -> Server:
    """Archive ``model_dir`` with ``config`` and serve it alone on free loopback ports (run folder output/run)."""
    stop(output / "run")
    config_file = output / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    store = output / "model_store"
    if archive.main([str(model_dir), "--name", name, "--config", str(config_file), "--export-path", str(store)]):
        raise SystemExit(1)
    properties = config_with_free_ports(REPO_ROOT / "config.properties", output / "config.properties")
    return start(properties, store, [f"{name}={name}.mar"], output / "run")


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
                runs = [
                    served_run(url, token, workloads[variant], concurrency, args.duration) for _ in range(args.rounds)
                ]
                summary = median_run(runs)
                summary["padding_ratio"] = padding_ratio(before, token_counters(server.metrics_url))
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


def main(argv: Sequence[str] | None = None) -> int:
    from transformers import AutoTokenizer

    args = parse_args(argv)
    if args.model_dir is None:
        demo.ensure_model(retrain=False)
        args.model_dir = demo.DEMO_MODEL
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
    (args.output / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plot(results, args.output / "bench.png")
    print(f"wrote {args.output / 'results.json'} and {args.output / 'bench.png'}")
    return 0


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput_axis, latency_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"mixed": "tab:blue", "long": "tab:orange"}
    for variant, runs in results.get("served", {}).items():
        levels = sorted(runs, key=int)
        clients = [int(level) for level in levels]
        throughput_axis.plot(clients, [runs[c]["throughput"] for c in levels], "o-", color=colours[variant],
                             label=f"served, {variant}")  # fmt: skip
        limits = results["in_process"][variant]
        throughput_axis.axhline(
            limits["best"], color=colours[variant], linestyle="--", label=f"in-process limit, {variant}"
        )
        if variant == "mixed":
            throughput_axis.axhline(limits["chunks_of_32"], color=colours[variant], linestyle=":",
                                    label="handler in-process, 32 at a time (a server's view)")  # fmt: skip
        latency_axis.plot(
            clients, [runs[c]["p99_ms"] for c in levels], "o-", color=colours[variant], label=f"p99, {variant}"
        )
        latency_axis.plot(
            clients, [runs[c]["p50_ms"] for c in levels], "s:", color=colours[variant], label=f"p50, {variant}"
        )
    throughput_axis.set(xlabel="concurrent clients", ylabel="requests / s (one input each)", title="Throughput")
    latency_axis.set(xlabel="concurrent clients", ylabel="latency (ms)", title="Latency", yscale="log")
    for axis in (throughput_axis, latency_axis):
        axis.set_xscale("log", base=2)
        axis.grid(alpha=0.3)
        if axis is throughput_axis:
            axis.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 0.1))
        else:
            axis.legend(fontsize=7, loc="upper left")
    info = results["machine"]
    figure.suptitle(
        f"{Path(results['model']).name} on {info['cores']} cores ({info['cpu']}), torch {info['torch']}", fontsize=9
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
