"""The folder a training run writes, as ``hflabels archive`` takes it: the model and tokenizer,
``index_to_name.json``, a ``model-config.yaml`` for serving (the shipped defaults with the
calibration, thresholds and guarantees fitted here), ``metrics.json`` and dtype auto's ``probe.txt``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from handler.api.tasks import Objective
from hflabels.paths import MODEL_CONFIG
from hflabels.training.evaluation import calibration_config
from hflabels.training.guarantees import merge_sections
from hflabels.training.options import PROBE_TEXTS


def save_outputs(
    output: Path,
    model: Any,
    tokenizer: Any,
    task: str,
    labels: Sequence[str],
    results: dict[str, Any],
    thresholds: np.ndarray | None,
    calibration: Any = None,
    guarantees: dict[str, Any] | None = None,
    probe: Sequence[str] = (),
) -> None:
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    (output / "index_to_name.json").write_text(
        json.dumps({str(i): name for i, name in enumerate(labels)}, indent=1) + "\n"
    )
    serving = yaml.safe_load(MODEL_CONFIG.read_text(encoding="utf-8"))
    handler = dict(serving.get("handler") or {})
    handler["task"] = Objective(task).task.value
    classification = dict(handler.get("classification") or {})
    if thresholds is not None:
        classification["multi_label"] = True
        classification["label_thresholds"] = {name: round(float(t), 6) for name, t in zip(labels, thresholds)}
    if calibration is not None:
        classification["calibration"] = calibration_config(calibration, labels, task)
    if classification:
        handler["classification"] = classification
    if guarantees is not None:
        handler = merge_sections(handler, guarantees)
    serving["handler"] = handler
    (output / "model-config.yaml").write_text(
        "# Written by hflabels train; hflabels archive archives it with the model.\n"
        + yaml.safe_dump(serving, sort_keys=False),
        encoding="utf-8",
    )
    (output / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    if probe:
        # dtype auto's probe (handler/engine/precision.py): held-out texts, one per line.
        lines = [" ".join(text.split()) for text in probe[:PROBE_TEXTS]]
        (output / "probe.txt").write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
