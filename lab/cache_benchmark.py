"""What the response cache (``handler.cache_size_mb``) buys on traffic that repeats itself.

Requests are drawn from a pool of distinct texts with Zipf-distributed popularity (the k-th most
popular text is asked for in proportion to 1 / k**s), the shape of repeated headlines and support
macros. One torchserve serves the model twice, with and without the cache; the same closed-loop
load runs against each, alternating rounds, and the cache's own counters give the hit rate.
A benchmark measures and reports: it asserts nothing.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hflabels.archiving import archive
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import start, stop
from lab.load import bodies_run
from lab.prometheus import counter_total


def zipf_requests(texts: Sequence[str], exponent: float, count: int, seed: int) -> list[bytes]:
    """``count`` request bodies, each a text of ``texts`` drawn with Zipf popularity."""
    ranks = np.arange(1, len(texts) + 1, dtype=np.float64)
    weights = ranks**-exponent
    drawn = np.random.default_rng(seed).choice(len(texts), size=count, p=weights / weights.sum())
    return [json.dumps({"inputs": texts[i]}).encode() for i in drawn]


def measure_cache(
    model_dir: Path,
    config: dict[str, Any],
    texts: Sequence[str],
    output: Path,
    exponent: float,
    cache_mb: float,
    concurrency: int,
    duration: float,
    rounds: int,
    seed: int,
) -> dict[str, Any]:
    store = output / "model_store"
    handler = dict(config.get("handler") or {})
    for name, cache in (("uncached", 0), ("cached", cache_mb)):
        archive(model_dir, name, document={**config, "handler": {**handler, "cache_size_mb": cache}}, export_path=store)
    (output / "model-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    properties = config_with_free_ports(TORCHSERVE_CONFIG, output / "config.properties")
    run_dir = output / "run"
    stop(run_dir)
    server = start(properties, store, ["uncached=uncached.mar", "cached=cached.mar"], run_dir)
    results: dict[str, list[dict[str, Any]]] = {"uncached": [], "cached": []}
    try:
        token = server.inference_token
        # Fresh draws for every run (the same popularity, not the same sequence replayed).
        draws = iter(range(1, 1000))
        for name in results:  # warm-up; the cache starts filling here, as it would in service
            bodies = zipf_requests(texts, exponent, 100_000, seed + next(draws))
            bodies_run(server.predictions_url(name), token, bodies, concurrency, duration)
        hits_before = counter_total(server.metrics_url, "CacheHitsTotal", "cached")
        misses_before = counter_total(server.metrics_url, "CacheMissesTotal", "cached")
        for round_index in range(rounds):
            order = ("uncached", "cached") if round_index % 2 == 0 else ("cached", "uncached")
            for name in order:
                bodies = zipf_requests(texts, exponent, 100_000, seed + next(draws))
                run = bodies_run(server.predictions_url(name), token, bodies, concurrency, duration)
                results[name].append({k: run[k] for k in ("throughput", "p50_ms", "p99_ms", "errors")})
                print(f"  {name:<8} round {round_index + 1}: {run['throughput']:7.1f} req/s  "
                      f"p50 {run['p50_ms']:6.1f} ms  errors {run['errors']}")  # fmt: skip
        hits = counter_total(server.metrics_url, "CacheHitsTotal", "cached") - hits_before
        misses = counter_total(server.metrics_url, "CacheMissesTotal", "cached") - misses_before
        evictions = counter_total(server.metrics_url, "CacheEvictionsTotal", "cached")
    finally:
        stop(run_dir)
    summary = {
        name: {
            "throughput": statistics.median(r["throughput"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "rounds": [round(r["throughput"], 1) for r in runs],
        }
        for name, runs in results.items()
    }
    summary["hit_rate"] = hits / max(1.0, hits + misses)
    summary["evictions"] = evictions
    summary["speedup"] = summary["cached"]["throughput"] / summary["uncached"]["throughput"]
    return summary
