"""``hflabels COMMAND ...``: every tool of this repository behind one console command.

``scripts/NAME.py`` runs the same command as its own program (``run_command``), so both spellings
take the same arguments and print the same lines.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

# Subcommand -> module under hflabels.commands (imported only when that command runs, so
# `hflabels serve stop` does not load torch).
COMMANDS = {
    "archive": ("archive", "check a model folder and bundle it into a .mar"),
    "serve": ("serve", "start, stop or check torchserve with this repository's config"),
    "train": ("train", "fine-tune a model on labelled data, labels included"),
    "augment": ("augment", "write synthetic rare-class examples with a local causal LM"),
    "data": ("data", "fetch real labelled data (the VADER corpora) as training files"),
    "evaluate": ("evaluate", "check a served model against labelled data and its model folder"),
    "plot-evaluation": ("plot_evaluation", "plot an evaluation report"),
    "demo": ("demo", "train, archive and serve the demo model, show real answers"),
    "bench": ("bench", "served throughput and latency against the in-process limit"),
    "bench-peers": ("bench_peers", "this handler next to TorchServe's HF example and infinity-emb"),
    "bench-cache": ("bench_cache", "the response cache's speed-up on a Zipf-distributed workload"),
    "soak": ("soak", "sustained load: errors, latency and memory over time"),
    "accelerations": ("accelerations", "opt-in accelerations: speed and answer agreement"),
    "kserve-store": ("kserve_store", "lay out a KServe model store for an archive"),
    "imbalance": ("imbalance", "the class-imbalance experiment: every strategy, calibrated or not"),
    "real-data": ("real_data", "the measured comparison on the real VADER corpora, baselines included"),
    "guarantees": ("guarantees", "prediction sets, abstention and drift measured on the real VADER data"),
    "calibrate": ("calibrate", "refit calibration, prediction sets, abstention and drift reference on labelled data"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each flag's help says its default (unless it already does); descriptions keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"hflabels.commands.{COMMANDS[name][0]}")


def _summary(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().split("\n\n")[0]


def _description(module: ModuleType) -> str:
    """The command's docstring, its ``code`` marks dropped: what ``--help`` shows above the flags."""
    return (module.__doc__ or "").strip().replace("``", "").replace("`", "")


def run_command(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """One command as a program of its own (``prog`` names it in usage and error lines)."""
    module = _module(name)
    parser = argparse.ArgumentParser(prog=prog, description=_description(module), formatter_class=HelpFormatter)
    module.configure(parser)
    args = parser.parse_args(argv)
    args.prog = parser.prog
    return module.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hflabels", description="Every tool of this repository behind one command.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen command's module is imported; the others are listed by name.
    chosen = next((word for word in arguments if not word.startswith("-")), None)
    for name in COMMANDS:
        if name == chosen:
            module = _module(name)
            module.configure(commands.add_parser(name, help=_summary(module), description=_description(module),
                                                 formatter_class=HelpFormatter))  # fmt: skip
        else:
            commands.add_parser(name, help=COMMANDS[name][1], add_help=False)
    args = parser.parse_args(arguments)
    args.prog = f"hflabels {args.command}"
    return _module(args.command).run(args)


if __name__ == "__main__":
    sys.exit(main())
