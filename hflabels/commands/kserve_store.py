"""Lay out a KServe model store for the TorchServe runtime, and its InferenceService manifest.

    hflabels kserve-store --model sentiment=build/demo-model [--model ner=DIR ...] \
        --output build/kserve [--protocol v1|v2] [--storage-uri URI] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hflabels.kserve_store import ENVELOPES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR", help="repeat for each model")
    parser.add_argument("--output", type=Path, required=True, help="folder for the store and the manifest")
    parser.add_argument("--protocol", choices=sorted(ENVELOPES), default="v1", help="KServe's inference protocol")
    parser.add_argument("--config", type=Path, help="model-config.yaml for every model (default: as archive)")
    parser.add_argument("--storage-uri", default="gs://YOUR-BUCKET/PATH", help="where the store will be copied")
    parser.add_argument("--image", default="YOUR-REGISTRY/torchserve-hf-labels:0.1.0", help="see kserve/Dockerfile")


def run(args: argparse.Namespace) -> int:
    from hflabels.archiving import ArchiveError
    from hflabels.kserve_store import write_store

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    models = []
    for spec in args.model:
        name, _, folder = spec.partition("=")
        models.append((name, Path(folder)))
    try:
        names = write_store(models, args.output, args.protocol, args.config, args.storage_uri, args.image)
    except ArchiveError as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: model-store/ ({', '.join(names)}), config/config.properties, inferenceservice.yaml")
    return 0
