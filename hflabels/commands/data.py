"""Fetch real labelled data and write it as training files.

    hflabels data vader --output build/vader [--domain movies --domain tweets ...] [--seed 42]

``vader``: the four human-rated corpora of Hutto & Gilbert (ICWSM 2014) shipped in the source
distribution of vaderSentiment 3.3.2 (MIT), fetched with pip and checked by sha256. Writes, per
domain, seeded stratified ``train/validation/test.csv`` (``text,label``: negative, neutral,
positive by the paper's rule) and ``regression/*.csv`` (``text,score``: the mean rating, -4..4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hflabels.paths import BUILD
from hflabels.training.data import DataError
from hflabels.vader_data import DOMAINS, LABELS, SDIST_NAME, fetch_sdist, read_corpora, write_dataset


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=["vader"], help="which data set (vader: Hutto & Gilbert 2014)")
    parser.add_argument("--output", type=Path, required=True, help="folder for DOMAIN/{train,validation,test}.csv")
    parser.add_argument("--domain", action="append", choices=sorted(DOMAINS),
                        help="repeat for several (default: all four)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=42, help="seed of the stratified splits (default: 42)")
    parser.add_argument("--cache", type=Path, default=BUILD / "downloads",
                        help=f"where pip puts {SDIST_NAME} (default: build/downloads)")  # fmt: skip
    parser.add_argument("--sdist", type=Path, help=f"a local copy of {SDIST_NAME} instead of downloading it")


def run(args: argparse.Namespace) -> int:
    domains = args.domain or list(DOMAINS)
    try:
        sdist = args.sdist if args.sdist is not None else fetch_sdist(args.cache)
        counts = write_dataset(args.output, read_corpora(sdist, domains), args.seed)
    except (DataError, OSError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    for domain, splits in counts.items():
        parts = []
        for name, counter in splits.items():
            total = sum(counter.values())
            shares = " ".join(f"{label} {counter[label] / total:.0%}" for label in LABELS)
            parts.append(f"{name} {total} ({shares})")
        print(f"{domain}: " + "; ".join(parts))
    print(f"wrote {args.output} (source and citation in {args.output / 'SOURCE.txt'})")
    return 0
