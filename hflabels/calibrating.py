"""``hflabels calibrate``: refit a trained folder's calibration and guarantees on labelled traffic.

The labelled file is split (seeded, stratified): one part fits the prior correction and the
temperature (``fit_prior_and_temperature``), the other, held out from that fit, the conformal
thresholds, the abstention threshold and the drift reference (hflabels.training.guarantees; the
inputs' part in hflabels.training.drift_reference). The
folder's model-config.yaml is rewritten with them; the weights are not touched. The logits come
from the handler's own runner on the folder, so what is fitted is what will be served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from handler.api.request_parsing import RequestBody
from handler.api.settings import HandlerSettings
from handler.api.tasks import Task
from handler.postprocess.scoring import Activation, served_scores
from hflabels.evaluation import folder_runner
from hflabels.training.calibration import calibration_metrics, fit_prior_and_temperature
from hflabels.training.data import DataError, Example, load_examples
from hflabels.training.drift_reference import add_input_reference
from hflabels.training.evaluation import binary_calibration_metrics, calibration_config, multi_hot
from hflabels.training.guarantees import (
    GuaranteeError,
    GuaranteeOptions,
    fit_guarantees,
    merge_sections,
    split_for_guarantees,
)
from hflabels.training.imbalance import LOGIT_ADJUSTMENT, OVERSAMPLE

MODEL_CONFIG_NAME = "model-config.yaml"


@dataclass(frozen=True)
class CalibrateOptions:
    model_dir: Path
    data: Path
    guarantees: GuaranteeOptions = field(default_factory=GuaranteeOptions)
    # False: keep the folder's calibration and fit only the guarantees (on every example).
    refit_scaling: bool = True
    seed: int = 42


def folder_logits(runner: Any, examples: list[Example], batch_size: int = 32) -> np.ndarray:
    """Each example's logits in label index order, from the handler's runner (raw scores)."""
    rows: list[list[float]] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        inputs = [e.text if e.text_pair is None else {"text": e.text, "text_pair": e.text_pair} for e in batch]
        body = RequestBody(inputs, {"raw_scores": True, "return_all_scores": True}, is_json=True)
        [outcome] = runner.run([runner.parse(body)]).outcomes
        if outcome.error is not None:
            raise DataError(f"the model could not score the data: {outcome.error.message}")
        rows += [[item["score"] for item in answer] for answer in outcome.payload]
    return np.array(rows, dtype=np.float64)


def truth_of(examples: list[Example], labels: list[str], multi_label: bool) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({name for e in examples for name in (e.labels if multi_label else [e.label])} - set(index))
    if unknown:
        raise DataError(f"the data names label(s) {unknown} the model does not have ({labels})")
    if multi_label:
        return multi_hot(examples, index)
    return np.array([index[e.label] for e in examples])


def decisions_weigh_classes_alike(model_dir: Path) -> bool:
    """Whether ``hflabels train`` served this folder's decisions with every class weighed alike
    (its metrics.json says so); refitting the prior on traffic would undo that."""
    metrics = model_dir / "metrics.json"
    if not metrics.exists():
        return False
    recorded = json.loads(metrics.read_text(encoding="utf-8")).get("imbalance") or {}
    return recorded.get("mode") in (LOGIT_ADJUSTMENT, OVERSAMPLE)


def calibrate(options: CalibrateOptions) -> dict[str, Any]:
    """Refit and rewrite ``model_dir/model-config.yaml``; returns what was fitted and measured."""
    runner = folder_runner(options.model_dir)
    if runner.task is not Task.SEQUENCE_CLASSIFICATION or runner.regression:
        raise DataError("hflabels calibrate applies to sequence classification models (single- or multi-label)")
    multi_label = bool(runner.multi_label)
    labels = list(runner.labels)
    task = "multi_label" if multi_label else "single_label"
    examples = load_examples(options.data, task)
    truth = truth_of(examples, labels, multi_label)
    logits = folder_logits(runner, examples)
    activation = Activation.SIGMOID if multi_label else Activation.SOFTMAX
    metrics = binary_calibration_metrics if multi_label else calibration_metrics
    report: dict[str, Any] = {"examples": len(examples), "labels": labels}
    if options.refit_scaling:
        scaling, held_out = split_for_guarantees(truth, options.guarantees.held_out_share, options.seed)
        kept = runner.calibration.adjustment if decisions_weigh_classes_alike(options.model_dir) else None
        if kept is not None and not multi_label:
            report["logit_adjustment_kept"] = (
                "trained to weigh every class alike (--imbalance oversample or logit_adjustment): the "
                "adjustment is kept, the temperature and the top-label curve refitted"
            )
        calibration = fit_prior_and_temperature(logits[scaling], truth[scaling], multi_label, kept)
        report["scaling_examples"] = len(scaling)
    else:
        held_out = np.arange(len(examples))
        calibration = runner.calibration
    report["held_out_examples"] = len(held_out)
    before = served_scores(logits[held_out], activation, runner.calibration)
    after = served_scores(logits[held_out], activation, calibration)
    report["held_out_calibration"] = {
        "before": metrics(before, truth[held_out]),
        "after": metrics(after, truth[held_out]),
    }
    try:
        independent = None
        if options.refit_scaling:
            independent = served_scores(logits[scaling], activation, calibration).max(axis=1)
        sections, fitted = fit_guarantees(after, truth[held_out], labels, multi_label, options.guarantees,
                                          independent_top_scores=independent)  # fmt: skip
    except GuaranteeError as error:
        raise DataError(str(error)) from None
    report.update(fitted)
    config_path = options.model_dir / MODEL_CONFIG_NAME
    serving = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    serving = serving or {}
    handler = dict(serving.get("handler") or {})
    if options.refit_scaling:
        handler.pop("calibration", None)
        classification = dict(handler.get("classification") or {})
        classification["calibration"] = calibration_config(calibration, labels, task)
        handler["classification"] = classification
        report["calibration"] = classification["calibration"]
    serving["handler"] = merge_sections(handler, sections)
    # What is written must load: the handler's own settings and runner checks, before the file changes.
    HandlerSettings.from_mapping(serving["handler"])
    config_path.write_text(
        "# Written by hflabels train / hflabels calibrate; hflabels archive archives it with the model.\n"
        + yaml.safe_dump(serving, sort_keys=False),
        encoding="utf-8",
    )
    # The input drift reference from the held-out examples, through the runner that scored them.
    held_examples = [examples[i] for i in held_out]
    report["drift_input_reference"] = add_input_reference(options.model_dir, held_examples, options.seed, runner)
    folder_runner(options.model_dir)
    return report
