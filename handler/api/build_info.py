"""The library versions an archive was built with, and how they differ from the ones serving it.

``hflabels archive`` writes ``build-info.json`` into every .mar; at load the handler compares it
with what is installed where torchserve runs and logs a WARNING per difference (a model trained
and tested with one transformers can tokenize or compute differently under another).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BUILD_INFO_FILE = "build-info.json"
RECORDED_PACKAGES = ("transformers", "tokenizers", "torch")


def installed_versions(packages: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def write_build_info(folder: Path) -> Path:
    path = folder / BUILD_INFO_FILE
    path.write_text(json.dumps({"built_with": installed_versions()}, indent=1) + "\n", encoding="utf-8")
    return path


def version_differences(model_dir: Path, installed: Mapping[str, str | None] | None = None) -> list[str]:
    """One line per recorded package served with another version than it was built with; empty
    for an archive without build-info.json (made before it was written)."""
    path = model_dir / BUILD_INFO_FILE
    if not path.exists():
        return []
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("built_with", {})
    except (ValueError, AttributeError):
        return [f"{BUILD_INFO_FILE} cannot be read"]
    current = installed if installed is not None else installed_versions(tuple(recorded))
    return [
        f"{name} {recorded[name]} built this archive, {current.get(name) or 'none'} serves it"
        for name in sorted(recorded)
        if recorded[name] != current.get(name)
    ]
