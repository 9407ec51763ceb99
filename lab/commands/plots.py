"""Draw every plot of the docs' results pages again from the committed results JSON.

    python -m lab plots [--results docs/results]

Each plot is drawn by the same function the command that measured it uses, from the JSON it
wrote, so a picture never says what its numbers do not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hflabels.paths import REPO_ROOT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "docs" / "results",
                        help="the folder of results JSON; the plots are written beside them")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from hflabels.plotting import plot_risk_coverage
    from lab.commands.imbalance import plot as plot_imbalance
    from lab.plots import plot_benchmark, plot_peers, plot_rare_class, plot_real_data

    def load(name: str) -> dict:
        return json.loads((args.results / name).read_text(encoding="utf-8"))

    def plot_peers_of(name: str, path: Path) -> None:
        peers = load(name)
        concurrencies = sorted({int(key) for found in peers["servers"].values() for key in found if key.isdigit()})
        plot_peers(peers, concurrencies, path)

    drawn = {
        "bench.png": lambda path: plot_benchmark(load("bench-results.json"), path),
        "peers.png": lambda path: plot_peers_of("bench-peers-results.json", path),
        "peers-zen5.png": lambda path: plot_peers_of("bench-peers-zen5.json", path),
        "real-data.png": lambda path: plot_real_data(load("real-data-results.json"), path),
        "risk-coverage.png": lambda path: plot_risk_coverage(
            load("guarantees-results.json")["realised_lac"], path, "movie MiniLM on the movie test split, served"),
        "imbalance.png": lambda path: plot_imbalance(load("imbalance.json"), path),
        "rare-class.png": lambda path: plot_rare_class(load("rare-class.json"), path),
    }
    for name, draw in drawn.items():
        draw(args.results / name)
        print(f"drew {args.results / name}")
    return 0
