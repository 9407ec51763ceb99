"""A request that suits a served archive, for the curl `hflabels serve` prints: its first probe
text (``probe.txt``, which ``hflabels train`` fills with held-out texts of the model's own data),
shaped for its task. Read from the .mar itself, so it says something true of that model."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import yaml

# Without probe texts: a sentence that claims nothing about what the model is for.
PLACEHOLDER = "Replace this with a text of your own."


def probe_and_task(archive: Path) -> tuple[str | None, str | None]:
    """The archive's first probe text and its task (None where the archive has none)."""
    try:
        with zipfile.ZipFile(archive) as mar:
            names = set(mar.namelist())
            probe = mar.read("probe.txt").decode("utf-8") if "probe.txt" in names else ""
            config = yaml.safe_load(mar.read("model-config.yaml")) if "model-config.yaml" in names else {}
    except (OSError, zipfile.BadZipFile, yaml.YAMLError, UnicodeDecodeError):
        return None, None
    text = next((line.strip() for line in probe.splitlines() if line.strip()), None)
    task = ((config or {}).get("handler") or {}).get("task")
    return text, task if isinstance(task, str) else None


def sample_body(archive: Path | None) -> dict[str, Any]:
    text, task = probe_and_task(archive) if archive is not None and archive.is_file() else (None, None)
    text = text or PLACEHOLDER
    if task == "question_answering":
        return {"inputs": {"question": "What is this about?", "context": text}}
    if task == "zero_shot_classification":
        return {"inputs": text, "parameters": {"candidate_labels": ["a topic", "another topic"]}}
    return {"inputs": text}
