"""Refit a trained folder's calibration and guarantees on labelled data drawn from the traffic.

    hflabels calibrate build/movie-model --data traffic-sample.csv [--method aps] [--abstain-error 0.05]

Part of the file (--held-out-share, seeded and stratified) is held out from the temperature and
prior fit; on it the conformal prediction-set thresholds, the abstention threshold and the drift
reference are fitted. MODEL_DIR/model-config.yaml is rewritten (weights untouched); archive the
folder again to serve it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handler.api.errors import ConfigurationError
from handler.api.settings import ConformalMethod
from hflabels.training.choices import DEFAULT_ABSTAIN_CONFIDENCE, DEFAULT_COVERAGES
from hflabels.training.data import DataError

if TYPE_CHECKING:
    from hflabels.training.guarantees import GuaranteeOptions


def coverage_level(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a coverage level is between 0 and 1, got {text}")
    return value


def add_guarantee_arguments(parser: argparse.ArgumentParser) -> None:
    """The options train and calibrate share."""
    parser.add_argument("--method", choices=[m.value for m in ConformalMethod], metavar="METHOD",
                        help="prediction sets: lac, aps or class_conditional (single-label), fnr_control "
                        "(multi-label); default: lac, or fnr_control for multi-label models")  # fmt: skip
    parser.add_argument(
        "--coverage",
        type=coverage_level,
        action="append",
        metavar="LEVEL",
        help=f"a coverage level to fit, repeatable (default: {', '.join(map(str, DEFAULT_COVERAGES))})",
    )
    parser.add_argument(
        "--abstain-error",
        type=float,
        metavar="E",
        help="fit an abstention threshold: error among answered inputs at most E (single-label)",
    )
    parser.add_argument(
        "--abstain-confidence",
        type=float,
        default=DEFAULT_ABSTAIN_CONFIDENCE,
        help="the probability with which that error bound holds",
    )
    parser.add_argument(
        "--held-out-share",
        type=float,
        default=0.5,
        help="the share of the labelled examples kept from the temperature fit, for the guarantees",
    )


def guarantee_options(args: argparse.Namespace) -> GuaranteeOptions:
    from hflabels.training.guarantees import GuaranteeOptions

    return GuaranteeOptions(
        method=ConformalMethod(args.method) if args.method else None,
        coverages=tuple(sorted(set(args.coverage))) if args.coverage else DEFAULT_COVERAGES,
        abstain_error=args.abstain_error,
        abstain_confidence=args.abstain_confidence,
        held_out_share=args.held_out_share,
    )


def print_guarantees(report: dict[str, Any]) -> None:
    conformal = report["conformal"]
    levels = ", ".join(
        f"{level:g}: {threshold:.4f}" if isinstance(threshold, float) else
        f"{level:g}: " + " ".join(f"{k} {v:.4f}" for k, v in threshold.items())
        for level, threshold in conformal["thresholds"].items()
    )  # fmt: skip
    print(f"prediction sets ({conformal['method']}, {conformal['examples']} held-out examples): {levels}")
    if "abstention" in report:
        a = report["abstention"]
        print(f"abstention: answer when the top score is >= {a['threshold']:.3f} (error <= {a['max_error']:g} "
              f"with confidence {a['confidence']:g}; held out: {a['held_out_answered']:.1%} answered, "
              f"error {a['held_out_error']:.3f})")  # fmt: skip
    if "abstention_skipped" in report:
        print(f"warning: no abstention threshold: {report['abstention_skipped']}")
    reference = report["drift_reference"]
    shares = ", ".join(f"{k} {v:.3f}" for k, v in reference["labels"].items())
    print(f"drift reference ({reference['examples']} held-out predictions): {shares}")
    inputs = report.get("drift_input_reference")
    if inputs:
        print(f"input drift reference: {inputs['examples']} held-out representations in {inputs['file']} "
              f"(RBF bandwidth {inputs['bandwidth']:.4g})")  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a folder written by hflabels train")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="labelled examples distributed like the traffic (CSV or JSONL, as for train)",
    )
    parser.add_argument(
        "--keep-scaling",
        action="store_true",
        help="keep the folder's temperature and prior correction; fit the guarantees on every example",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the held-out split")
    add_guarantee_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from hflabels.calibrating import CalibrateOptions, calibrate

    options = CalibrateOptions(
        model_dir=args.model_dir, data=args.data, guarantees=guarantee_options(args),
        refit_scaling=not args.keep_scaling, seed=args.seed,
    )  # fmt: skip
    try:
        report = calibrate(options)
    except (DataError, ConfigurationError, OSError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    if "calibration" in report:
        from hflabels.training.evaluation import describe_calibration

        fitted = describe_calibration(report["calibration"])
        print(f"calibration fitted on {report['scaling_examples']} examples: {fitted}")
        if "logit_adjustment_kept" in report:
            print(report["logit_adjustment_kept"])
    held = report["held_out_calibration"]
    print(f"held-out ({report['held_out_examples']} examples): ECE {held['before']['ece']:.4f} -> "
          f"{held['after']['ece']:.4f}, NLL {held['before']['nll']:.4f} -> {held['after']['nll']:.4f}")  # fmt: skip
    print_guarantees(report)
    print(f"\nwrote {args.model_dir / 'model-config.yaml'} (archive the folder again to serve it)")
    return 0
