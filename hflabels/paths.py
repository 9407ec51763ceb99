"""Where this repository keeps its files: the defaults of every command."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDLER_PACKAGE = REPO_ROOT / "handler"
MODEL_CONFIG = REPO_ROOT / "model-config.yaml"
TORCHSERVE_CONFIG = REPO_ROOT / "config.properties"
LOG_CONFIG = REPO_ROOT / "log4j2.xml"
MODEL_STORE = REPO_ROOT / "model_store"
RUN_DIR = REPO_ROOT / ".serve"
BUILD = REPO_ROOT / "build"
SENTIMENT_DATA = REPO_ROOT / "data" / "sentiment"
KSERVE_MANIFEST = REPO_ROOT / "kserve" / "inferenceservice.yaml"
