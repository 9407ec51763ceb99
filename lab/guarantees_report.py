"""The guarantees on real data (``make guarantees``): the movie-domain MiniLM of the real-data
comparison, recalibrated with ``hflabels calibrate`` on the movie validation split, served by a
real torchserve, and measured on the VADER test splits:

1. prediction sets (LAC and APS) per coverage level: realised coverage and mean set size on the
   movie test split as served, and the mean coverage over seeded re-splits of validation + test;
   class-conditional sets, refused where the neutral class is too rare to support them;
2. abstention: the risk-coverage curve of the served scores and the realised error at the fitted
   threshold (docs/results/risk-coverage.png);
3. drift: the served Drift* gauges after a window of each domain's test texts (in-domain movies,
   then tweets, NYT editorials and Amazon reviews), read from TorchServe's metrics port (the
   alarm's rates over many windows: lab/drift_study.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from handler.api.settings import ConformalMethod
from handler.postprocess.conformal import aps_set, lac_set
from hflabels.archiving import archive
from hflabels.calibrating import CalibrateOptions, calibrate
from hflabels.evaluation import folder_settings, realised_guarantees, served_predictions
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.plotting import plot_risk_coverage
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import start, stop
from hflabels.training.data import DataError, load_examples
from hflabels.training.guarantees import GuaranteeOptions, fit_conformal
from hflabels.vader_data import LABELS
from lab.prometheus import gauge_values
from lab.results import write_results

DRIFT_GAUGES = ("DriftInputP", "DriftLabelP", "DriftConfidenceP", "DriftLabelPSI", "DriftConfidencePSI", "DriftAlarm")
DOMAINS_FOR_DRIFT = ("movies", "tweets", "nyt", "amazon")


@dataclass(frozen=True)
class GuaranteePlan:
    model_dir: Path
    data: Path
    output: Path
    work: Path
    abstain_error: float = 0.1
    resplits: int = 100
    drift_window: int = 200


def resplit_coverage(probabilities: np.ndarray, truth: np.ndarray, n: int, splits: int, seed: int = 0) -> dict:
    """Mean coverage and set size over seeded re-splits: n examples calibrate, the rest test."""
    rng = np.random.default_rng(seed)
    found: dict[str, dict[str, list[float]]] = {}
    for method, build in (("lac", lac_set), ("aps", aps_set)):
        for _ in range(splits):
            order = rng.permutation(len(truth))
            calibration, test = order[:n], order[n:]
            fitted = fit_conformal(probabilities[calibration], truth[calibration], ConformalMethod(method), LABELS)
            for level, threshold in fitted["thresholds"].items():
                sets = [build(probabilities[i], threshold) for i in test]
                row = found.setdefault(f"{method} {level:g}", {"coverage": [], "size": []})
                row["coverage"].append(float(np.mean([truth[i] in s for i, s in zip(test, sets)])))
                row["size"].append(float(np.mean([len(s) for s in sets])))
    return {
        key: {
            "mean_coverage": round(float(np.mean(v["coverage"])), 4),
            "sd_coverage": round(float(np.std(v["coverage"])), 4),
            "mean_size": round(float(np.mean(v["size"])), 3),
        }
        for key, v in found.items()
    }


def run(plan: GuaranteePlan, say: Callable[[str], None]) -> dict[str, Any]:
    if not (plan.model_dir / "config.json").exists():
        raise DataError(f"{plan.model_dir}: no trained model (make real-data trains it, or pass --model-dir)")
    plan.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"model_dir": str(plan.model_dir), "abstain_error": plan.abstain_error}
    folders = {}
    for method in ("lac", "aps", "class_conditional"):
        folder = plan.work / f"model-{method}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(plan.model_dir, folder, ignore=shutil.ignore_patterns("checkpoints"))
        options = GuaranteeOptions(method=ConformalMethod(method), abstain_error=plan.abstain_error)
        say(f"hflabels calibrate {folder.name} --method {method} on the movie validation split ...")
        try:
            results[f"calibrate_{method}"] = calibrate(CalibrateOptions(folder, plan.data / "movies" / "validation.csv",
                                                                        guarantees=options))  # fmt: skip
            folders[method] = folder
        except DataError as error:
            results[f"calibrate_{method}"] = {"refused": str(error)}
            say(f"  refused: {error}")
    served_model = folders["lac"]
    config_path = served_model / "model-config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["handler"]["monitoring"]["drift_window"] = plan.drift_window
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    store = plan.work / "store"
    archive(served_model, "movies", export_path=store)
    config = config_with_free_ports(TORCHSERVE_CONFIG, plan.work / "config.properties")
    server = start(config, store, ["movies=movies.mar"], plan.work / "run", timeout=600)
    try:
        url = server.predictions_url("movies")
        token = server.inference_token
        test = load_examples(plan.data / "movies" / "test.csv", "single_label")
        validation = load_examples(plan.data / "movies" / "validation.csv", "single_label")
        say(f"served scores of the movie test split ({len(test)}) and validation split ({len(validation)}) ...")
        served_test = served_predictions(url, token, test, "single_label", 32, 4)
        served_validation = served_predictions(url, token, validation, "single_label", 32, 4)
        labels = list(results["calibrate_lac"]["labels"])
        for method, folder in folders.items():
            results[f"realised_{method}"] = realised_guarantees(served_test, test, labels, folder_settings(folder))
        pool = served_test + served_validation
        probabilities = np.array([[scores[label] for label in labels] for scores in pool])
        truth = np.array([labels.index(e.label) for e in test + validation])
        n = results["calibrate_lac"]["held_out_examples"]
        say(f"coverage over {plan.resplits} re-splits of validation + test ({n} calibrate each) ...")
        results["resplits"] = {"calibration_examples": n, "splits": plan.resplits,
                               **resplit_coverage(probabilities, truth, n, plan.resplits)}  # fmt: skip
        drift = {}
        for domain in DOMAINS_FOR_DRIFT:
            examples = load_examples(plan.data / domain / "test.csv", "single_label")
            order = np.random.default_rng(0).permutation(len(examples))[: plan.drift_window]
            served_predictions(url, token, [examples[i] for i in order], "single_label", 32, 4)
            # The window is tested off the request path; its gauges go out with the next batch.
            time.sleep(1.0)
            served_predictions(url, token, [examples[order[0]]], "single_label", 1, 1)
            time.sleep(0.5)
            drift[domain] = gauge_values(server.metrics_url, DRIFT_GAUGES, "movies")
            say(f"  drift after {plan.drift_window} {domain} texts: {drift[domain]}")
        results["drift"] = drift
        monitoring = folder_settings(served_model).monitoring
        results["drift_settings"] = {"window": monitoring.drift_window, "level": monitoring.drift_level}
    finally:
        stop(plan.work / "run")
    plan.output.mkdir(parents=True, exist_ok=True)
    write_results(plan.output / "guarantees-results.json", results)
    plot_risk_coverage(results["realised_lac"], plan.output / "risk-coverage.png",
                       "movie MiniLM on the movie test split, served")  # fmt: skip
    return results

