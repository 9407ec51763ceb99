"""Where this project keeps its files: the defaults of every command.

The serving defaults (``model-config.yaml``, ``config.properties``, ``log4j2.xml``) are package
data, so an installed ``hflabels`` finds them; the working folders (model store, run directory,
build outputs) are relative to where a command runs, under the checkout when run from one.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
DEFAULTS = PACKAGE / "defaults"
MODEL_CONFIG = DEFAULTS / "model-config.yaml"
TORCHSERVE_CONFIG = DEFAULTS / "config.properties"
LOG_CONFIG = DEFAULTS / "log4j2.xml"
# The handler package that goes into every archive: installed beside hflabels.
HANDLER_PACKAGE = PACKAGE.parent / "handler"
# A checkout keeps its working folders at its root; an installed hflabels uses the current folder.
_CHECKOUT = PACKAGE.parent
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "pyproject.toml").exists() else Path.cwd()
MODEL_STORE = REPO_ROOT / "model_store"
RUN_DIR = REPO_ROOT / ".serve"
BUILD = REPO_ROOT / "build"
SENTIMENT_DATA = REPO_ROOT / "data" / "sentiment"
KSERVE_MANIFEST = REPO_ROOT / "kserve" / "inferenceservice.yaml"
