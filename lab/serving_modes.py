"""How each serving mode keeps the model's speed: the candidates served side by side, measured in
interleaved rounds (round 1 of every mode, then round 2 of every mode, ...), so a slow minute of a
shared machine falls on all of them alike.

Each mode is the shipped model-config.yaml with a few keys changed. Every server is started before
the first round and stays up (an idle TorchServe takes next to no CPU). For each mode: a closed
loop at each client count, and an open loop of Poisson arrivals at shares of the model's in-process
rate, with p50/p99 and where the CPU went (client, frontend, workers) per request.
A benchmark measures and reports: it asserts nothing.
"""

from __future__ import annotations

import copy
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hflabels.torchserve_control import Server, stop
from lab.benchmark import serve_model
from lab.cpu_split import CpuSplit, measure_cpu
from lab.load import median_run, open_run, served_run
from lab.torchserve_floor import FLOOR_MODE, serve_floor

# Each mode's workers on ports (unix sockets) of their own, away from TorchServe's default 9000.
WORKER_PORT_BASE = 9300


# The mode that measures what the drift monitor costs: the same model without its reference.
NO_DRIFT_MONITOR = "classic, drift monitor off"
# A mode's keys under this prefix are environment variables of its server, not model-config keys.
ENV_PREFIX = "env."
SHORT_SPIN = f"{ENV_PREFIX}GOMP_SPINCOUNT"


def candidate_modes(cores: int | None = None, config: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Name -> the model-config keys it changes (dotted keys are nested: handler.loading.x). A
    ``config`` whose model carries a drift reference adds the shipped mode without it."""
    cores = cores or os.cpu_count() or 1
    half = max(cores // 2, 1)
    monitoring = ((config or {}).get("handler") or {}).get("monitoring") or {}
    drift = {NO_DRIFT_MONITOR: {"handler.monitoring.reference": None}} if monitoring.get("reference") else {}
    return {
        "classic (shipped: batchSize 32, maxBatchDelay 1)": {},
        "classic, maxBatchDelay 3": {"maxBatchDelay": 3},
        # jobQueueSize: the bound the classic frontend's job_queue_size (config.properties) gives.
        "async: handler batches when the model is free": {
            "asyncCommunication": True, "batchSize": 1, "jobQueueSize": 256,
        },
        # The handler divides the cores' threads between the two (torch_num_threads null).
        f"2 workers x {half} thread{'s' if half > 1 else ''} (classic)": {"minWorkers": 2, "maxWorkers": 2},
        # torch's OpenMP (libgomp) threads spin about 300,000 times after a parallel region before
        # they sleep; a lone request's spinning takes the cores the frontend needs to answer it.
        # libgomp reads this at torch's import, so it is set for the server, not in the handler.
        "classic, OpenMP threads sleep after 10,000 spins": {SHORT_SPIN: "10000"},
        # With threads that sleep soon a batch of one request borrows the idle worker's cores
        # (handler/engine/core_sharing.py: loading.borrow_idle_cores auto).
        f"2 workers x {half} thread{'s' if half > 1 else ''}, OpenMP threads sleep after 10,000 spins": {
            "minWorkers": 2, "maxWorkers": 2, SHORT_SPIN: "10000",
        },
        **drift,
    }


def environment_of(overrides: dict[str, Any]) -> dict[str, str]:
    """The server's environment variables a mode sets (its ``env.`` keys)."""
    return {key[len(ENV_PREFIX) :]: str(value) for key, value in overrides.items() if key.startswith(ENV_PREFIX)}


def with_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the mode's model-config keys changed (its ``env.`` keys are not config)."""
    changed = copy.deepcopy(config)
    for key, value in overrides.items():
        if key.startswith(ENV_PREFIX):
            continue
        *parents, name = key.split(".")
        target = changed
        for parent in parents:
            # A parent absent or null gets a mapping of its own, attached before it is written to
            # (``setdefault(...) or {}`` once wrote an empty parent's keys into a detached dict).
            if not isinstance(target.get(parent), dict):
                target[parent] = {}
            target = target[parent]
        target[name] = value
    return changed


def _summary(runs: list[dict[str, Any]], cpu: CpuSplit) -> dict[str, Any]:
    summary = median_run(runs)
    summary["cpu_ms_per_request"] = cpu.per_request_ms(summary["requests"])
    return summary


def measure_modes(
    model_dir: Path,
    config: dict[str, Any],
    texts: Sequence[str],
    in_process_rate: float,
    output: Path,
    concurrency: Sequence[int],
    loads: Sequence[float],
    rounds: int,
    duration: float,
    modes: dict[str, dict[str, Any]],
    floor: bool = False,
) -> dict[str, Any]:
    """Every mode (and with ``floor`` TorchServe's own floor, lab/torchserve_floor.py, under the
    shipped frontend settings) served side by side and measured in interleaved rounds."""
    servers: dict[str, Server] = {}
    found: dict[str, Any] = {name: {"overrides": keys, "closed": {}, "open": {}} for name, keys in modes.items()}
    folders = [output / f"mode-{index}" for index in range(len(modes))]
    try:
        for index, (name, overrides) in enumerate(modes.items()):
            servers[name] = serve_model(model_dir, with_overrides(config, overrides), folders[index], "bench",
                                        worker_port=WORKER_PORT_BASE + 10 * index,
                                        environment=environment_of(overrides))  # fmt: skip
        if floor:
            folders.append(output / "floor")
            servers[FLOOR_MODE] = serve_floor(config, folders[-1], "bench", WORKER_PORT_BASE + 10 * len(modes))
            found[FLOOR_MODE] = {"overrides": {}, "floor": True, "closed": {}, "open": {}}
        for server in servers.values():  # warm-up
            served_run(server.predictions_url("bench"), server.inference_token, texts, 8, 2.0)
        plans = [("closed", c) for c in concurrency] + [("open", share) for share in loads]
        for kind, level in plans:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            cpu = {name: CpuSplit() for name in servers}
            for round_index in range(rounds):
                for name, server in servers.items():
                    url, token = server.predictions_url("bench"), server.inference_token
                    with measure_cpu(server.frontend_pid()) as split:
                        if kind == "closed":
                            run = served_run(url, token, texts, int(level), duration)
                        else:
                            run = open_run(url, token, texts, level * in_process_rate, duration, seed=round_index)
                    runs[name].append(run)
                    cpu[name] = cpu[name].plus(split)
            for name in servers:
                summary = _summary(runs[name], cpu[name])
                summary["ratio_to_in_process"] = round(summary["throughput"] / in_process_rate, 3)
                key = str(level)
                found[name][kind][key] = summary
                shares = summary["cpu_ms_per_request"]
                label = f"c={level}" if kind == "closed" else f"open {level:.0%}"
                print(f"  {label:<10} {name[:44]:<44} {summary['throughput']:7.1f}/s  p50 {summary['p50_ms']:6.1f} ms  "
                      f"p99 {summary['p99_ms']:7.1f} ms  errors {summary['errors']}  "
                      f"CPU ms/request: client {shares['client']:.2f} frontend {shares['frontend']:.2f} "
                      f"workers {shares['workers']:.2f}")  # fmt: skip
    finally:
        for folder in folders:
            stop(folder / "run")
    return found


def lone_request_overhead(found: dict[str, Any], single_input_ms: float) -> dict[str, float]:
    """Each mode's p50 at one client over one input alone in-process, in ms."""
    return {
        name: round(result["closed"]["1"]["p50_ms"] - single_input_ms, 2)
        for name, result in found.items()
        if "1" in result["closed"] and not result.get("floor")
    }


def best_mode(found: dict[str, Any], clients: str = "32") -> str:
    """The mode with the highest median closed-loop throughput at ``clients``."""
    candidates = [name for name in found if not found[name].get("floor")]
    return max(candidates, key=lambda name: found[name]["closed"].get(clients, {}).get("throughput", 0.0))


def median_of(values: Sequence[float]) -> float:
    return float(statistics.median(values))
