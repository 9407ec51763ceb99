"""Draw a served model's evaluation (the JSON of `evaluate --report`) as a PNG.

plot-evaluation build/evaluation.json [--output build/evaluation.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hflabels.plotting import plot_report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", type=Path, help="the JSON written by evaluate --report")
    parser.add_argument("--output", type=Path, help="the PNG (default: the report's name with .png)")


def run(args: argparse.Namespace) -> int:
    output = args.output or args.report.with_suffix(".png")
    plot_report(json.loads(args.report.read_text(encoding="utf-8")), output)
    print(f"wrote {output}")
    return 0
