"""TorchServe's own floor: the same frontend, protocol, batching settings and load generator, with
a handler that answers every input at once (no JSON parsing, no model).

What a served request costs beyond one input in-process splits into what TorchServe and the client
cost whatever the handler does (this floor) and what our handler's path adds on top; the issue's
goal of a lone request within 2 ms of in-process is out of reach wherever the floor alone is more.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from hflabels.archiving import archiver_command
from hflabels.torchserve_control import Server, start, stop
from lab.benchmark import loopback_properties

FLOOR_MODE = "TorchServe floor: a handler that answers at once"

# A module-level entry point: TorchServe calls it with None once at load, then with each batch.
FLOOR_HANDLER = '''\
ANSWER = b'{"label": "floor", "score": 1.0}'


def handle(data, context):
    if data is None:
        return None
    return [ANSWER] * len(data)
'''


def serve_floor(config: dict[str, Any], output: Path, name: str, worker_port: int | None = None) -> Server:
    """Archive the floor handler with ``config`` (its frontend keys: batchSize, maxBatchDelay,
    workers) and serve it alone on free loopback ports (run folder output/run)."""
    stop(output / "run")
    output.mkdir(parents=True, exist_ok=True)
    handler = output / "floor_handler.py"
    handler.write_text(FLOOR_HANDLER)
    frontend_keys = {key: value for key, value in config.items() if key != "handler"}
    (output / "model-config.yaml").write_text(yaml.safe_dump(frontend_keys, sort_keys=False))
    store = output / "model_store"
    store.mkdir(exist_ok=True)
    subprocess.run([*archiver_command(), "--model-name", name, "--version", "1.0", "--handler", str(handler),
                    "--config-file", str(output / "model-config.yaml"), "--export-path", str(store), "--force"],
                   check=True, capture_output=True)  # fmt: skip
    return start(loopback_properties(output, worker_port), store, [f"{name}={name}.mar"], output / "run")
