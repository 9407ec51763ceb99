"""``hflabels COMMAND ...``: the workflow behind one console command.

Train (or bring) a model, archive it, serve it, evaluate it. The measurement and experiment tools
live apart, in the lab (``python -m lab TOOL``), which reuses this dispatcher. A command's module is
imported only when that command runs, and its ``configure`` imports nothing heavy, so ``--help``
answers at once and ``hflabels serve stop`` does not load torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# Subcommand -> (module under hflabels.commands, one line for the command list), in workflow order.
COMMANDS = {
    "train": ("train", "fine-tune a model on labelled data, labels and calibration included"),
    "calibrate": ("calibrate", "refit calibration, prediction sets, abstention and drift reference"),
    "archive": ("archive", "check a model folder and bundle it into a .mar"),
    "serve": ("serve", "start, stop, check, deploy or roll back models on torchserve"),
    "evaluate": ("evaluate", "check a served model against labelled data and its model folder"),
    "plot-evaluation": ("plot_evaluation", "plot an evaluation report (confusion, reliability, risk)"),
    "demo": ("demo", "train, archive and serve the demo model, show real answers"),
    "data": ("data", "fetch real labelled data (the VADER corpora) as training files"),
    "augment": ("augment", "write synthetic rare-class examples with a local causal LM"),
    "kserve-store": ("kserve_store", "lay out a KServe model store for an archive"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each flag's help says its default (unless it already does); descriptions keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


@dataclass(frozen=True)
class CommandLine:
    """A program made of subcommands, each a module with ``configure(parser)`` and ``run(args)``."""

    prog: str
    package: str
    commands: Mapping[str, tuple[str, str]]
    description: str

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{self.commands[name][0]}")

    def parser_for(self, name: str, prog: str | None = None) -> argparse.ArgumentParser:
        """One command's full parser (what its ``--help`` prints)."""
        module = self.module(name)
        parser = argparse.ArgumentParser(prog=prog or f"{self.prog} {name}", description=_description(module),
                                         formatter_class=HelpFormatter)  # fmt: skip
        module.configure(parser)
        return parser

    def top_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        for name, (_, summary) in self.commands.items():
            commands.add_parser(name, help=summary, add_help=False)
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        arguments = list(sys.argv[1:] if argv is None else argv)
        # Only the chosen command's module is imported; the others are listed by name.
        chosen = next((word for word in arguments if not word.startswith("-")), None)
        if chosen not in self.commands:
            self.top_parser().parse_args(arguments)  # prints the list, or says what is wrong
            return 2
        parser = self.parser_for(chosen)
        args = parser.parse_args(arguments[arguments.index(chosen) + 1:])
        args.command, args.prog = chosen, parser.prog
        return self.module(chosen).run(args)


def _description(module: ModuleType) -> str:
    """The command's docstring, its ``code`` marks dropped: what ``--help`` shows above the flags."""
    return (module.__doc__ or "").strip().replace("``", "").replace("`", "")


HFLABELS = CommandLine(
    prog="hflabels",
    package="hflabels.commands",
    commands=COMMANDS,
    description=(
        "Serve Hugging Face transformers models on TorchServe with label names.\n\n"
        "  hflabels train --task single_label --train train.csv --output build/my-model\n"
        "  hflabels archive build/my-model --name reviews\n"
        "  hflabels serve start reviews\n\n"
        "`hflabels COMMAND --help` for a command's flags; the measurement tools: python -m lab --help."
    ),
)


def run_command(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """One command as a program of its own (``prog`` names it in usage and error lines)."""
    parser = HFLABELS.parser_for(name, prog=prog or Path(sys.argv[0]).name)
    args = parser.parse_args(argv)
    args.command, args.prog = name, parser.prog
    return HFLABELS.module(name).run(args)


def main(argv: Sequence[str] | None = None) -> int:
    return HFLABELS.main(argv)


if __name__ == "__main__":
    sys.exit(main())
