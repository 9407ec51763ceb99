"""The servers a user would pick instead, measured next to this one on the same model and load.

- TorchServe's own Hugging Face example handler (``Transformer_handler_generalized.py`` from
  pytorch/serve's examples; not shipped with the torchserve package, so its path is given),
  patched only where transformers 5 removed what it calls, archived with the model and an
  ``index_to_name.json``, served with this project's ``config.properties``;
- infinity-emb (``make infinity``: its own venv, since it pins transformers 4.x), torch engine,
  its ``/classify`` route.

Each is started alone on loopback, warmed up, and driven by the same closed loop of mixed inputs
as ``hflabels bench``. Their top labels on a sample of texts are compared with this handler's.
A benchmark measures and reports: it asserts nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from hflabels.archiving import archive
from hflabels.paths import REPO_ROOT, TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports, free_port
from hflabels.torchserve_control import Server, start, stop
from lab.load import bodies_run, median_run

INFINITY_VENV = REPO_ROOT / ".venv-infinity"
# What transformers 5 removed from the example's tokenizer call (encode_plus, pad_to_max_length),
# replaced by the call that does the same; nothing else in the handler changes.
EXAMPLE_PATCHES = (
    ("self.tokenizer.encode_plus(", "self.tokenizer("),
    ("pad_to_max_length=True,", 'padding="max_length", truncation=True,'),
)
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")  # fmt: skip


@dataclass
class Peer:
    """A running server: how to post one text to it, and how to read its top label back."""

    name: str
    url: str
    token: str | None
    body_of: Callable[[str], bytes]
    label_of: Callable[[Any], str]
    stop: Callable[[], None]

    def top_label(self, text: str) -> str:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = requests.post(self.url, data=self.body_of(text), headers=headers, timeout=60)
        response.raise_for_status()
        try:
            answer = response.json()
        except ValueError:  # TorchServe's example answers the bare label name
            answer = response.text
        return self.label_of(answer)


def _top_label_of_ours(answer: Any) -> str:
    return (answer[0] if isinstance(answer, list) else answer)["label"]


def serve_ours(model_dir: Path, config: dict[str, Any], output: Path) -> Peer:
    store = output / "model_store"
    archive(model_dir, "ours", document=config, export_path=store)
    properties = config_with_free_ports(TORCHSERVE_CONFIG, output / "config.properties")
    server = start(properties, store, ["ours=ours.mar"], output / "run")
    return Peer("this handler", server.predictions_url("ours"), server.inference_token,
                lambda text: json.dumps({"inputs": text}).encode(), _top_label_of_ours,
                lambda: stop(output / "run"))  # fmt: skip


def serve_torchserve_example(model_dir: Path, example: Path, output: Path) -> Peer:
    """The example handler, patched for transformers 5, with its own shipped handler settings."""
    source = output / "source"
    source.mkdir(parents=True, exist_ok=True)
    text = example.read_text(encoding="utf-8")
    for old, new in EXAMPLE_PATCHES:
        text = text.replace(old, new)
    handler = source / "Transformer_handler_generalized.py"
    handler.write_text(text, encoding="utf-8")
    model_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    labels = {str(index): name for index, name in model_config["id2label"].items()}
    (source / "index_to_name.json").write_text(json.dumps(labels), encoding="utf-8")
    document = {
        "minWorkers": 1, "maxWorkers": 1, "batchSize": 32, "maxBatchDelay": 1, "responseTimeout": 60,
        # The example's model-config.yaml values, with explanations off (they parse every input
        # as a Python literal) and no pt2 compile section.
        # model_name: the example loads its tokenizer by this name whenever its check for a vocab
        # file (relative to the working folder, not the model's) fails, so it names the folder.
        "handler": {"model_name": str(model_dir), "mode": "sequence_classification", "do_lower_case": True,
                    "num_labels": len(labels), "save_mode": "pretrained", "max_length": 150,
                    "captum_explanation": False, "embedding_name": "bert", "BetterTransformer": False,
                    "model_parallel": False},
    }  # fmt: skip
    (source / "model-config.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    # As the example's README archives it: the weights as the serialized file, the rest as extras.
    extra = [str(model_dir / name) for name in MODEL_FILES[2:] if (model_dir / name).exists()]
    extra += [str(model_dir / "config.json")]
    store = output / "model_store"
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(Path(sys.executable).with_name("torch-model-archiver")), "--model-name", "example", "--version", "1.0",
         "--serialized-file", str(model_dir / "model.safetensors"), "--handler", str(handler),
         "--extra-files", ",".join([*extra, str(source / "index_to_name.json")]),
         "--config-file", str(source / "model-config.yaml"), "--export-path", str(store), "--force"],
        check=True,
    )  # fmt: skip
    properties = config_with_free_ports(TORCHSERVE_CONFIG, output / "config.properties")
    server: Server = start(properties, store, ["example=example.mar"], output / "run", timeout=120)
    # The example reads the raw body: a JSON string arrives as the text itself.
    return Peer(
        "TorchServe HF example", server.predictions_url("example"), server.inference_token,
        lambda text: json.dumps(text).encode(), lambda answer: answer, lambda: stop(output / "run"),
    )  # fmt: skip


def serve_infinity(model_dir: Path, output: Path, batch_size: int = 32, dtype: str | None = None) -> Peer:
    """infinity-emb's torch engine; ``dtype`` its ``--dtype`` (None: its default, float32 on a CPU)."""
    executable = INFINITY_VENV / "bin" / "infinity_emb"
    if not executable.exists():
        raise FileNotFoundError(f"{executable} is missing: run `make infinity`")
    output.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(output / "infinity.log", "w", encoding="utf-8")  # noqa: SIM115 - closed by stop()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    process = subprocess.Popen(
        [str(executable), "v2", "--model-id", str(model_dir), "--engine", "torch", "--device", "cpu",
         "--batch-size", str(batch_size), "--port", str(port), "--host", "127.0.0.1", "--no-bettertransformer",
         *(["--dtype", dtype] if dtype else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"infinity exited; see {output / 'infinity.log'}")
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)

    def stop_infinity() -> None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()

    model_id = str(model_dir)
    return Peer(
        "infinity-emb", f"{base}/classify", None,
        lambda text: json.dumps({"model": model_id, "input": [text]}).encode(),
        lambda answer: max(answer["data"][0], key=lambda item: item["score"])["label"], stop_infinity,
    )  # fmt: skip


def measure_peer(peer: Peer, texts: Sequence[str], concurrencies: Sequence[int], rounds: int, duration: float,
                 sample: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    bodies = [peer.body_of(text) for text in texts]
    bodies_run(peer.url, peer.token, bodies, 8, 3.0)  # warm-up
    found: dict[str, Any] = {"labels": [peer.top_label(text) for text in sample]}
    for concurrency in concurrencies:
        runs = [bodies_run(peer.url, peer.token, bodies, concurrency, duration) for _ in range(rounds)]
        found[str(concurrency)] = median_run(runs)
    return found


def versions() -> dict[str, str]:
    found = {}
    for name in ("torch", "transformers", "torchserve"):
        try:
            from importlib.metadata import version

            found[name] = version(name)
        except Exception:
            found[name] = "?"
    python = INFINITY_VENV / "bin" / "python"
    if python.exists():
        script = "from importlib.metadata import version as v; print(v('infinity-emb'), v('transformers'), v('torch'))"
        result = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
        if result.returncode == 0:
            infinity, transformers, torch = result.stdout.split()
            found.update({"infinity-emb": infinity, "infinity transformers": transformers, "infinity torch": torch})
    return found


def clean(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
