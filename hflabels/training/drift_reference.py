"""The input drift test's reference: the served model's representations of held-out examples.

``hflabels train`` and ``hflabels calibrate`` call :func:`add_input_reference` with the examples
they held out for the output reference (never trained or temperature-fitted on, so they are
drawn like in-domain traffic). The representations come from the handler's own runner on the
folder, the pass that serves (handler/engine/encoder_runner.py ``representations``), so the
reference and the served windows are computed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from handler.api.request_parsing import RequestBody
from handler.api.settings import HandlerSettings
from handler.postprocess.drift_tests import median_bandwidth
from handler.serving.drift_monitor import reference_sample
from hflabels.training.data import DataError, Example

REFERENCE_FILE = "drift-reference.npy"
# A larger reference costs every window's test quadratically for little power (measured in the
# drift study: docs/trust/drift.md).
MAX_REFERENCE_EXAMPLES = 500
MODEL_CONFIG_NAME = "model-config.yaml"


def representations(runner: Any, examples: Sequence[Example], batch_size: int = 32) -> np.ndarray:
    """Each example's representation (float32 rows) from the runner's serving pass."""
    runner.representations = True
    rows: list[np.ndarray] = []
    try:
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            inputs = [e.text if e.text_pair is None else {"text": e.text, "text_pair": e.text_pair} for e in batch]
            [outcome] = runner.run([runner.parse(RequestBody(inputs, {}, is_json=True))]).outcomes
            if outcome.error is not None:
                raise DataError(f"the model could not answer the reference examples: {outcome.error.message}")
            rows += [np.asarray(result.representation, dtype=np.float32) for result in outcome.results]
    finally:
        runner.representations = False
    return np.stack(rows)


def add_input_reference(
    model_dir: Path, examples: Sequence[Example], seed: int, runner: Any = None
) -> dict[str, Any]:
    """Write ``drift-reference.npy`` (at most MAX_REFERENCE_EXAMPLES of ``examples``, seeded) and name
    it in model-config.yaml's ``handler.monitoring.reference.inputs``; the section written.
    ``runner``: the handler's runner on the folder (built here, on the CPU, when not given)."""
    config_path = model_dir / MODEL_CONFIG_NAME
    text = config_path.read_text(encoding="utf-8")
    serving = yaml.safe_load(text) or {}
    if runner is None:
        import torch

        from handler.registry import build_runner

        runner = build_runner(model_dir, HandlerSettings.from_mapping(serving.get("handler")), torch.device("cpu"))
    reference = ((serving.get("handler") or {}).get("monitoring") or {}).get("reference")
    if not isinstance(reference, dict):
        raise DataError(f"{config_path} has no handler.monitoring.reference to add the inputs to")
    chosen = np.random.default_rng(seed).permutation(len(examples))[:MAX_REFERENCE_EXAMPLES]
    found = representations(runner, [examples[i] for i in sorted(chosen)])
    np.save(model_dir / REFERENCE_FILE, found)
    section = {"file": REFERENCE_FILE, "examples": len(found), "bandwidth": round(median_bandwidth(found), 6)}
    reference["inputs"] = section
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    config_path.write_text(header + yaml.safe_dump(serving, sort_keys=False), encoding="utf-8")
    # What is written must load as the handler reads it.
    settings = HandlerSettings.from_mapping(serving["handler"])
    assert settings.monitoring.reference is not None
    reference_sample(settings.monitoring.reference, tuple(runner.labels), model_dir, runner.config.hidden_size)
    return section
