"""A KServe model store for the TorchServe runtime, and its InferenceService manifest.

Under the output folder:
- model-store/NAME.mar: each model archived with batchSize 1 (TorchServe's KServe envelopes
  answer only the first request of a frontend batch);
- config/config.properties: KServe's TorchServe settings (port 8085, metrics on 8082, the
  envelope from TS_SERVICE_ENVELOPE) with a model_snapshot carrying each model's
  model-config.yaml values (workers, maxBatchDelay, responseTimeout, ...), and the shipped
  config.properties' vmargs (JVM options) naming the logging file below;
- config/log4j2.xml: the project's INFO logging (not TorchServe's DEBUG lines per request);
- inferenceservice.yaml: kserve/inferenceservice.yaml with the first model's name filled in.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hflabels.paths import KSERVE_MANIFEST, LOG_CONFIG, MODEL_CONFIG, TORCHSERVE_CONFIG
from hflabels.torchserve_config import read_properties

logger = logging.getLogger(__name__)
ENVELOPES = {"v1": "kserve", "v2": "kservev2"}
SNAPSHOT_KEYS = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout")

# Inside a pod TorchServe must listen on the pod's address; KServe's ingress does authentication,
# and its proxy sends no TorchServe token. The model API stays off and no URL is allowed.
KSERVE_PROPERTIES = {
    "inference_address": "http://0.0.0.0:8085",
    "management_address": "http://0.0.0.0:8085",
    "metrics_address": "http://0.0.0.0:8082",
    "grpc_inference_port": "7070",
    "grpc_management_port": "7071",
    "enable_envvars_config": "true",
    "disable_token_authorization": "true",
    "enable_model_api": "false",
    "allowed_urls": "^$",
    "install_py_dep_per_model": "false",
    "enable_metrics_api": "true",
    "metrics_mode": "prometheus",
    "model_metrics_auto_detect": "true",
    "max_request_size": "2097152",
    "job_queue_size": "256",
    "model_store": "/mnt/models/model-store",
}
# The pod starts torchserve with only --ts-config: the logging comes with the store.
POD_LOG_CONFIG = "file:///mnt/models/config/log4j2.xml"


def pod_vmargs() -> str:
    """The shipped config.properties' JVM options, with the logging file where the pod mounts the store."""
    options = [
        option for option in read_properties(TORCHSERVE_CONFIG)["vmargs"].split()
        if not option.startswith("-Dlog4j.configurationFile=")
    ]  # fmt: skip
    return " ".join([*options, f"-Dlog4j.configurationFile={POD_LOG_CONFIG}"])


def serving_config(model_dir: Path, config: Path | None) -> dict[str, Any]:
    path = config or (model_dir / "model-config.yaml" if (model_dir / "model-config.yaml").exists() else MODEL_CONFIG)
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def snapshot_entry(name: str, document: dict[str, Any]) -> dict[str, Any]:
    entry = {"defaultVersion": True, "marName": f"{name}.mar"}
    entry.update({key: document[key] for key in SNAPSHOT_KEYS if key in document})
    return {"1.0": entry}


def render_manifest(name: str, envelope: str, storage_uri: str, image: str, cpu: int) -> str:
    text = KSERVE_MANIFEST.read_text(encoding="utf-8")
    for key, value in {
        "name": name,
        "envelope": envelope,
        "storage_uri": storage_uri,
        "image": image,
        "cpu": cpu,
    }.items():
        text = text.replace(f"<{key}>", str(value))
    return text


def write_store(
    models: Sequence[tuple[str, Path]],
    output: Path,
    protocol: str,
    config: Path | None = None,
    storage_uri: str = "gs://YOUR-BUCKET/PATH",
    image: str = "YOUR-REGISTRY/torchserve-hf-labels:0.1.0",
) -> list[str]:
    """Archive each (name, folder) into ``output``'s store and write its config and manifest;
    returns the model names. Raises ArchiveError for a folder that cannot be archived."""
    from hflabels.archiving import archive  # torch and transformers: only when a store is written

    store, config_dir = output / "model-store", output / "config"
    store.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    workers = 1
    for name, model_dir in models:
        document = serving_config(model_dir, config)
        if document.get("batchSize", 1) != 1:
            logger.warning("%s: batchSize %s -> 1 (KServe envelopes answer one request per batch)", name,
                           document["batchSize"])  # fmt: skip
        document["batchSize"] = 1
        archive(model_dir, name, document=document, export_path=store)
        entries[name] = snapshot_entry(name, document)
        workers = max(workers, int(document.get("maxWorkers", 1)))
    snapshot = {"name": "startup.cfg", "modelCount": len(entries), "models": entries}
    shutil.copy(LOG_CONFIG, config_dir / "log4j2.xml")
    lines = [f"{key}={value}" for key, value in KSERVE_PROPERTIES.items()] + [f"vmargs={pod_vmargs()}"]
    lines += [f"service_envelope={ENVELOPES[protocol]}", f"model_snapshot={json.dumps(snapshot)}"]
    (config_dir / "config.properties").write_text(
        "# Written by hflabels kserve-store for KServe's TorchServe runtime.\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    first = next(iter(entries))
    manifest = render_manifest(first, ENVELOPES[protocol], storage_uri, image, max(1, workers))
    (output / "inferenceservice.yaml").write_text(manifest, encoding="utf-8")
    return list(entries)
