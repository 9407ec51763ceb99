"""`make soak`: a long closed-loop load on a served model, watching for errors and memory growth.

    python -m lab soak [--model-dir DIR] [--requests 100000] [--concurrency 32] [--kill-worker-after S]

Serves the model (default: the demo model) with the shipped model-config.yaml, sends mixed-length
inputs until --requests have been answered, and reports throughput, p50/p99 latency, error counts
by status, and the resident memory of the frontend and the worker at the start, during and at the
end (a leak shows as growth). With --kill-worker-after, the worker process is killed once, that
many seconds in, and the report says which requests failed, with which status, and how long until
answers came back. With --deploy-after, a second version of the model is deployed that many seconds
in (as `hflabels serve deploy` does) and the report counts the requests around the switch that
were not answered 200. Writes build/soak.json. Not a test: it measures and reports.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil

from hflabels.archiving import archive
from hflabels.demo import model_or_demo
from hflabels.deployment import DeployError, deploy
from hflabels.paths import BUILD, MODEL_CONFIG
from hflabels.torchserve_control import stop
from lab.benchmark import serve_model
from lab.commands.bench import model_config
from lab.load import mixed_inputs, served_run, word_stream
from lab.results import write_results


def server_memory_mb(run_dir: Path) -> dict[str, float]:
    """Resident memory of the torchserve frontend and its workers."""
    pid = int((run_dir / "tmp" / ".model_server.pid").read_text().strip())
    frontend = psutil.Process(pid)
    workers = [
        child for child in frontend.children(recursive=True) if "model_service_worker" in " ".join(child.cmdline())
    ]
    return {
        "frontend": round(frontend.memory_info().rss / 2**20, 1),
        "workers": round(sum(worker.memory_info().rss for worker in workers) / 2**20, 1),
    }


def worker_pids(run_dir: Path) -> list[int]:
    pid = int((run_dir / "tmp" / ".model_server.pid").read_text().strip())
    children = psutil.Process(pid).children(recursive=True)
    return [child.pid for child in children if "model_service_worker" in " ".join(child.cmdline())]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="the model folder to serve")
    parser.add_argument("--requests", type=int, default=100_000, help="requests to send in all")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--slice", type=float, default=15.0, help="seconds between memory samples")
    parser.add_argument("--kill-worker-after", type=float, help="kill the worker once, this many seconds in")
    parser.add_argument(
        "--deploy-after",
        type=float,
        help="deploy a second version of the model (hflabels serve deploy) this many seconds in, under the load",
    )
    parser.add_argument("--output", type=Path, default=BUILD / "soak", help="folder for the results")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG, help="the model-config.yaml to serve with")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override model-config.yaml: asyncCommunication=true, batchSize=1, ...")  # fmt: skip


def frontend_live_jobs(run_dir: Path) -> int | None:
    """RestJob objects the frontend still holds (after the full GC a class histogram runs first);
    None without the JDK's jcmd."""
    if shutil.which("jcmd") is None:
        return None
    pid = (run_dir / "tmp" / ".model_server.pid").read_text().strip()
    histogram = subprocess.run(["jcmd", pid, "GC.class_histogram"], capture_output=True, text=True, timeout=120).stdout
    return sum(int(line.split()[1]) for line in histogram.splitlines() if line.rstrip().endswith("job.RestJob"))


def run(args: argparse.Namespace) -> int:
    args.model_dir = model_or_demo(args.model_dir)
    args.output.mkdir(parents=True, exist_ok=True)
    config = model_config(args)
    texts = mixed_inputs(word_stream(99), 2048, 99)
    server = serve_model(args.model_dir, config, args.output, "soak")
    run_dir = args.output / "run"
    url, token = server.predictions_url("soak"), server.inference_token
    memory = [{"t": 0.0, **server_memory_mb(run_dir)}]
    latencies: list[np.ndarray] = []
    timeline: list[tuple[float, int]] = []
    killed: dict[str, float] = {}
    started = time.perf_counter()
    if args.kill_worker_after is not None:

        def kill() -> None:
            victim = worker_pids(run_dir)[0]
            killed["at"] = time.perf_counter()
            psutil.Process(victim).kill()

        threading.Timer(args.kill_worker_after, kill).start()
    deployed: dict[str, object] = {}
    if args.deploy_after is not None:
        second = archive(args.model_dir, "soak", document=config, export_path=args.output / "v2", version="2.0").path

        def roll_out() -> None:
            deployed["at"] = time.perf_counter()
            try:
                deployed["summary"] = deploy(server, "soak", second, args.output / "model_store").summary()
            except DeployError as error:
                deployed["error"] = str(error)
            deployed["done"] = time.perf_counter()

        threading.Timer(args.deploy_after, roll_out).start()
    try:
        done = 0
        while done < args.requests:
            run = served_run(url, token, texts, args.concurrency, args.slice)
            done += run["requests"]
            latencies.append(run["latencies_ms"])
            timeline.extend(run["timeline"])
            memory.append({"t": round(time.perf_counter() - started, 1), **server_memory_mb(run_dir)})
            print(f"{done:>7} requests  {run['throughput']:6.1f}/s  p99 {run['p99_ms']:6.1f} ms  "
                  f"errors {run['errors']}  memory {memory[-1]}", flush=True)  # fmt: skip
        live_jobs = frontend_live_jobs(run_dir)
        memory.append({"t": round(time.perf_counter() - started, 1), **server_memory_mb(run_dir)})
    finally:
        stop(run_dir)
    elapsed = time.perf_counter() - started
    all_latencies = np.concatenate(latencies)
    statuses = Counter(status for _, status in timeline)
    report = {
        "model": str(args.model_dir),
        "requests": int(len(all_latencies)),
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 1),
        "throughput": round(len(all_latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(all_latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(all_latencies, 99)), 1),
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "model_config_set": args.set,
        "frontend_live_jobs_at_end": live_jobs,
        "memory_mb": memory,
    }
    if killed:
        failed = [(t - killed["at"], status) for t, status in timeline if status != 200]
        back = [t - killed["at"] for t, status in timeline if status == 200 and t > killed["at"]]
        report["worker_kill"] = {
            "failed_requests": len(failed),
            "failed_statuses": dict(Counter(str(status) for _, status in failed)),
            "failures_within_s": round(max((t for t, _ in failed), default=0.0), 2),
            "first_answer_after_kill_s": round(back[0], 2) if back else None,
            "last_failure_s": round(max((t for t, _ in failed), default=0.0), 2),
            "answered_after_kill": len(back),
        }
    if deployed:
        during = [status for t, status in timeline if deployed["at"] - 1 <= t <= deployed.get("done", t) + 5]  # type: ignore[operator]
        report["deploy"] = {
            "at_s": round(deployed["at"] - started, 1),  # type: ignore[operator]
            "took_s": round(deployed.get("done", deployed["at"]) - deployed["at"], 1),  # type: ignore[operator]
            "result": deployed.get("summary") or deployed.get("error"),
            "requests_during": len(during),
            "not_200_during": len([status for status in during if status != 200]),
            "lost_during": len([status for status in during if status == 0]),
        }
    write_results(args.output / "soak.json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "memory_mb"}, indent=1))
    print(f"memory at start {memory[0]}, at end {memory[-1]}; wrote {args.output / 'soak.json'}")
    return 0
