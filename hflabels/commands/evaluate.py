"""Check a served model against a labelled file, and against the model folder it was built from.

    hflabels evaluate --url http://127.0.0.1:8080/predictions/sentiment --token-file .serve/key_file.json \
        --data data/sentiment/test.csv --task single_label --model-dir build/demo-model [--report FILE]

Every served prediction is compared with the model folder's own prediction computed here by the
handler's runner, in-process: any difference is listed and the exit status is 1. A deployment that matches
its training run exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from handler.api.errors import ConfigurationError
from handler.api.labels import resolve_labels
from hflabels.training.data import TASKS, DataError, load_examples


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the /predictions/NAME URL")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", help="the inference bearer token")
    token.add_argument("--token-file", type=Path, help="TorchServe's key_file.json")
    parser.add_argument("--data", type=Path, required=True, help="labelled data (CSV or JSONL, as for train)")
    parser.add_argument("--task", choices=TASKS, required=True, help="what the data is labelled for")
    parser.add_argument("--model-dir", type=Path, required=True, help="the folder the served archive was built from")
    parser.add_argument("--batch-size", type=int, default=16, help="inputs per request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--report", type=Path, help="write every example's truth and predictions as JSON")
    parser.add_argument("--mapping", type=Path, help="the index_to_name.json the archive was made with, if it "
                        "renamed the model folder's labels (answers are then read back by index)")  # fmt: skip


def print_realised(guarantees: dict) -> None:
    curve = guarantees["risk_coverage"]
    marks = [row for row in curve if row["answered"] in (1.0,)] + [
        min(curve, key=lambda row: abs(row["answered"] - share)) for share in (0.8, 0.5, 0.2)
    ]
    print("risk-coverage (error among answered at a share answered): " + ", ".join(
        f"{row['answered']:.0%} -> {row['error']:.3f}" for row in marks))  # fmt: skip
    if "abstention" in guarantees:
        a = guarantees["abstention"]
        print(f"abstention at {a['threshold']:.3f}: {a['answered']:.1%} answered, error among them "
              f"{a['error_answered']} (bound {a['max_error']}; {a['error_all']:.3f} answering all)")  # fmt: skip
    if "prediction_sets" in guarantees:
        sets = guarantees["prediction_sets"]
        print(f"prediction sets ({sets['method']}): " + ", ".join(
            f"{level} -> coverage {row['coverage']:.3f}, mean size {row['mean_size']:.2f}"
            for level, row in sets["levels"].items()))  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import requests

    from hflabels.evaluation import (  # torch and transformers: only when evaluating
        check_served_names,
        folder_settings,
        local_predictions,
        metrics_for,
        model_labels,
        realised_guarantees,
        served_calibration,
        served_labels,
        served_predictions,
        to_folder_names,
    )
    from hflabels.training.metrics import format_table

    try:
        examples = load_examples(args.data, args.task)
        token = args.token
        if args.token_file is not None:
            token = json.loads(args.token_file.read_text())["inference"]["key"]
        labels = model_labels(args.model_dir)
        answers = served_predictions(args.url, token, examples, args.task, args.batch_size, args.concurrency)
        renames = {}
        if args.mapping is not None:
            served_names = resolve_labels(args.mapping, None, len(labels), logging.getLogger("evaluate"))
            renames = dict(zip(served_names, labels))
        answers = to_folder_names(args.task, answers, renames)
        check_served_names(args.task, answers, labels)
        served = served_labels(args.task, answers)
        local = served_labels(args.task, local_predictions(args.model_dir, examples, args.task))
    except (DataError, ConfigurationError, requests.RequestException, OSError, KeyError, ValueError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    metrics = metrics_for(args.task, examples, served, labels)
    print(f"served model on {args.data} ({len(examples)} examples):\n{format_table(metrics)}")
    calibration = None
    if args.task in ("single_label", "sentence_pair"):
        calibration = served_calibration(answers, examples, labels)
        print(f"served scores: ECE {calibration['ece']:.4f}  NLL {calibration['nll']:.4f}  "
              f"Brier {calibration['brier']:.4f}")  # fmt: skip
    guarantees = None
    if args.task == "single_label":
        guarantees = realised_guarantees(answers, examples, labels, folder_settings(args.model_dir))
        print_realised(guarantees)
    # A regression score may move in its last float32 bits with the batch it was computed in.
    differs = (lambda s, p: abs(s - p) > 1e-4) if args.task == "regression" else (lambda s, p: s != p)
    mismatches = [
        {"line": e.line, "served": s, "in_process": p} for e, s, p in zip(examples, served, local) if differs(s, p)
    ]
    if args.report is not None:
        truth = [
            list(e.tags)
            if args.task == "token_classification"
            else e.labels
            if args.task == "multi_label"
            else e.score
            if args.task == "regression"
            else e.label
            for e in examples
        ]
        args.report.write_text(json.dumps({
            "task": args.task, "labels": labels, "metrics": metrics, "truth": truth,
            "served": served, "in_process": local, "mismatches": mismatches, "calibration": calibration,
            "guarantees": guarantees,
        }, indent=1) + "\n")  # fmt: skip
    if mismatches:
        print(f"\n{len(mismatches)} of {len(examples)} served predictions differ from the model folder's:")
        for mismatch in mismatches[:20]:
            print(
                f"  {args.data}:{mismatch['line']}: served {mismatch['served']} vs in-process {mismatch['in_process']}"
            )
        return 1
    print(f"\nall {len(examples)} served predictions equal the model folder's in-process predictions")
    return 0
