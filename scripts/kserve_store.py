#!/usr/bin/env python3
"""Lay out a KServe model store for the TorchServe runtime, and its InferenceService manifest.

    scripts/kserve_store.py --model sentiment=build/demo-model [--model ner=DIR ...] \
        --output build/kserve [--protocol v1|v2] [--storage-uri URI] [--image IMAGE]

Writes, under --output:
- model-store/NAME.mar: each model archived with scripts/archive.py, with batchSize 1 (TorchServe's
  KServe envelopes answer only the first request of a frontend batch);
- config/config.properties: KServe's TorchServe settings (port 8085, metrics on 8082, the
  envelope from TS_SERVICE_ENVELOPE) with a model_snapshot carrying each model's
  model-config.yaml values (workers, maxBatchDelay, responseTimeout, ...);
- inferenceservice.yaml: kserve/inferenceservice.yaml with the first model's name filled in.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import archive
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_TEMPLATE = REPO_ROOT / "kserve" / "inferenceservice.yaml"
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR", help="repeat for each model")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--protocol", choices=sorted(ENVELOPES), default="v1")
    parser.add_argument("--config", type=Path, help="model-config.yaml for every model (default: as archive.py)")
    parser.add_argument("--storage-uri", default="gs://YOUR-BUCKET/PATH", help="where the store will be copied")
    parser.add_argument("--image", default="YOUR-REGISTRY/torchserve-hf-labels:0.1.0", help="see kserve/Dockerfile")
    return parser.parse_args(argv)


def serving_config(model_dir: Path, config: Path | None) -> dict[str, Any]:
    path = config or (
        model_dir / "model-config.yaml" if (model_dir / "model-config.yaml").exists() else archive.DEFAULT_CONFIG
    )
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def snapshot_entry(name: str, document: dict[str, Any]) -> dict[str, Any]:
    entry = {"defaultVersion": True, "marName": f"{name}.mar"}
    entry.update({key: document[key] for key in SNAPSHOT_KEYS if key in document})
    return {"1.0": entry}


def render_manifest(name: str, envelope: str, storage_uri: str, image: str, cpu: int) -> str:
    text = MANIFEST_TEMPLATE.read_text(encoding="utf-8")
    for key, value in {
        "name": name,
        "envelope": envelope,
        "storage_uri": storage_uri,
        "image": image,
        "cpu": cpu,
    }.items():
        text = text.replace(f"<{key}>", str(value))
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store, config_dir = args.output / "model-store", args.output / "config"
    store.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, Any] = {}
    workers = 1
    for spec in args.model:
        name, _, folder = spec.partition("=")
        model_dir = Path(folder)
        document = serving_config(model_dir, args.config)
        if document.get("batchSize", 1) != 1:
            print(f"{name}: batchSize {document['batchSize']} -> 1 (KServe envelopes answer one request per batch)")
        document["batchSize"] = 1
        with tempfile.TemporaryDirectory() as scratch:
            config_file = Path(scratch) / "model-config.yaml"
            config_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
            if archive.main(
                [str(model_dir), "--name", name, "--config", str(config_file), "--export-path", str(store)]
            ):
                return 1
        models[name] = snapshot_entry(name, document)
        workers = max(workers, int(document.get("maxWorkers", 1)))
    snapshot = {"name": "startup.cfg", "modelCount": len(models), "models": models}
    lines = [f"{key}={value}" for key, value in KSERVE_PROPERTIES.items()]
    lines += [f"service_envelope={ENVELOPES[args.protocol]}", f"model_snapshot={json.dumps(snapshot)}"]
    (config_dir / "config.properties").write_text(
        "# Written by scripts/kserve_store.py for KServe's TorchServe runtime.\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    first = next(iter(models))
    manifest = render_manifest(first, ENVELOPES[args.protocol], args.storage_uri, args.image, max(1, workers))
    (args.output / "inferenceservice.yaml").write_text(manifest, encoding="utf-8")
    print(f"wrote {args.output}: model-store/ ({', '.join(models)}), config/config.properties, inferenceservice.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
