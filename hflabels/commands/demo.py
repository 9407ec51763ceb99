"""`make demo`: fine-tune the demo sentiment model (once), archive it, serve it, show real answers.

The server keeps running afterwards; `make stop` stops it.

    hflabels demo [--retrain]
"""

from __future__ import annotations

import argparse
import logging
import sys

from hflabels.training.data import DataError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retrain", action="store_true", help="fine-tune again even if build/demo-model exists")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from transformers.utils import logging as transformers_logging

    from hflabels.archiving import ArchiveError
    from hflabels.demo import run_demo
    from hflabels.torchserve_control import ServeError

    transformers_logging.set_verbosity_error()
    # Weight loading and saving bars are not what the demo shows (the README shows its output).
    transformers_logging.disable_progress_bar()
    try:
        run_demo(args.retrain)
    except (ServeError, ArchiveError, DataError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 1
    return 0
