"""Calibration on unseen data: every calibrator fitted on a model's validation split, measured on
its test split (ECE equal-width and equal-mass with bootstrap intervals; conformal coverage).

    python -m lab calibration --models build/drift/movie-trained [--domain movies]
                              [--halves 20] [--output docs/results/calibration.json]

Each folder's own runner (the served path, in float32) gives the logits of the VADER domain's
validation and test splits (`hflabels data vader` writes them); lab/calibration_study.py fits and
measures. Where the CPU has bf16 units the test split also runs under bf16 autocast, and each
calibrator's served scores are compared with float32's (what dtype auto's check must bound).
Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hflabels.paths import BUILD, REPO_ROOT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="single-label model folders")
    parser.add_argument("--data", type=Path, default=BUILD / "vader", help="hflabels data vader's output")
    parser.add_argument("--domain", default="movies", help="the VADER domain the models were trained on")
    parser.add_argument("--halves", type=int, default=20, help="random validation halves besides the seeded one")
    parser.add_argument("--seed", type=int, default=42, help="the seeded half (hflabels train's default seed)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "results" / "calibration.json",
                        help="results JSON")  # fmt: skip


def exact_runner(folder: Path) -> Any:
    """The folder's runner in float32 on torch's own kernel, padded: logits the same on every load
    (the folder's own dtype auto could serve bf16, and its timings pick kernels)."""
    import torch
    import yaml

    from handler.api.settings import HandlerSettings
    from handler.registry import build_runner

    document = yaml.safe_load((folder / "model-config.yaml").read_text(encoding="utf-8")) or {}
    handler = dict(document.get("handler") or {})
    handler["loading"] = {**(handler.get("loading") or {}), "dtype": "float32", "float32_linear": "torch"}
    handler["batching"] = {**(handler.get("batching") or {}), "packed_forward": False}
    return build_runner(folder, HandlerSettings.from_mapping(handler), torch.device("cpu"))


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import torch

    from handler.engine.execution import fast_low_precision
    from hflabels.calibrating import folder_logits, truth_of
    from hflabels.training.data import load_examples
    from hflabels.training.guarantees import GuaranteeOptions
    from lab.calibration_study import study
    from lab.results import write_results

    found = {}
    low_precision = fast_low_precision(torch.device("cpu")) is not None
    for folder in args.models:
        runner = exact_runner(folder)
        labels = list(runner.labels)
        splits = []
        for split in ("validation", "test"):
            # Raw logits (folder_logits asks for raw scores): the study applies each calibrator.
            examples = load_examples(args.data / args.domain / f"{split}.csv", "single_label")
            splits.append((folder_logits(runner, examples), truth_of(examples, labels, False)))
        candidate = None
        if low_precision:
            # The same passes under bf16 autocast: how far each calibrator carries bf16's change.
            runner.policy = replace(runner.policy, autocast_dtype=torch.bfloat16)
            candidate = folder_logits(runner, load_examples(args.data / args.domain / "test.csv", "single_label"))
        share = GuaranteeOptions().held_out_share
        found[folder.name] = study(splits[0], splits[1], args.seed, share, args.halves, candidate)
        for name, row in found[folder.name]["calibrators"].items():
            print(f"{folder.name} {name:<40} test ECE {row['ece']:.3f} {row['ece_interval_90']} equal-mass "
                  f"{row['ece_equal_mass']:.3f}; over halves mean {row['halves']['ece_mean']:.3f} "
                  f"worst {row['halves']['ece_max']:.3f}; bf16 served change {row.get('bf16_served_change')}")
    write_results(args.output, {"data": f"VADER {args.domain}: validation and test splits", "models": found})
    print(f"wrote {args.output}")
    return 0
