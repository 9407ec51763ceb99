"""The drift alarm on real shifts: false alarms in-domain, detection of three real domains, power on mixes.

    python -m lab drift --models build/drift/movie-trained build/drift/movie-calibrated
                        [--windows 200] [--streams 10] [--output docs/results/drift.json]

Each folder is a movie-domain model (as `hflabels train` wrote it; after `hflabels calibrate`);
its own runner answers the VADER test splits and the served monitor's windows, tests and alarm
run on those answers at the folder's settings (lab/drift_study.py). Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hflabels.paths import BUILD, REPO_ROOT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="movie-domain model folders")
    parser.add_argument("--data", type=Path, default=BUILD / "vader", help="hflabels data vader's output")
    parser.add_argument("--windows", type=int, default=200, help="in-domain windows drawn for false alarms")
    parser.add_argument("--streams", type=int, default=10, help="shift streams per foreign domain")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "results" / "drift.json",
                        help="results JSON")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import logging

    from lab.drift_study import study_folder
    from lab.results import write_results

    logging.basicConfig(level=logging.WARNING)
    say = print
    found = {}
    for folder in args.models:
        say(f"{folder}:")
        found[folder.name] = study_folder(folder, args.data, args.windows, args.streams, say)
    write_results(args.output, {"data": "VADER test splits (movies in-domain)", "models": found})
    say(f"wrote {args.output}")
    return 0
