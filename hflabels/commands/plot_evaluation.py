"""Draw a served model's evaluation (the JSON of `evaluate --report`) as a PNG, and the
reliability diagram of its served scores beside it (REPORT-reliability.png), and, for single-label
models, the risk-coverage curve (REPORT-risk-coverage.png).

    hflabels plot-evaluation build/evaluation.json [--output build/evaluation.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", type=Path, help="the JSON written by evaluate --report")
    parser.add_argument("--output", type=Path, help="the PNG (default: the report's name with .png)")


def run(args: argparse.Namespace) -> int:
    from hflabels.plotting import plot_reliability, plot_report, plot_risk_coverage

    output = args.output or args.report.with_suffix(".png")
    report = json.loads(args.report.read_text(encoding="utf-8"))
    plot_report(report, output)
    print(f"wrote {output}")
    if report.get("calibration"):
        reliability = output.with_name(output.stem + "-reliability.png")
        plot_reliability(report, reliability)
        print(f"wrote {reliability}")
    if report.get("guarantees"):
        curve = output.with_name(output.stem + "-risk-coverage.png")
        plot_risk_coverage(report["guarantees"], curve)
        print(f"wrote {curve}")
    return 0
