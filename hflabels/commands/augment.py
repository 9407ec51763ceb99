"""Write synthetic examples of the rare classes with a local causal LM, for `train --synthetic`.

    hflabels augment --generator DIR --train data/train.csv --output build/synthetic.csv
                     [--classes neutral ...] [--per-class 50] [--shots 4] [--seed 42]

Each example comes from a few-shot prompt of real sentences of its class; the first line the model
writes is kept. Nothing here checks quality: `train --synthetic` deduplicates them against every
split and keeps only those a first model trained on the real data gives their label. How good they
are depends on the generator (none ships offline with this project).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from hflabels.training.data import DataError, load_examples
from hflabels.training.synthetic import SYNTHETIC_TASKS, generate, rare_labels


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", type=Path, required=True, help="a local causal LM save_pretrained folder")
    parser.add_argument("--train", type=Path, required=True, help="the real training data (text,label)")
    parser.add_argument("--output", type=Path, required=True, help="CSV to write (text,label)")
    parser.add_argument("--task", choices=SYNTHETIC_TASKS[:1], default="single_label", help="default: single_label")
    parser.add_argument("--classes", nargs="+", help="labels to write for (default: those under half the largest)")
    parser.add_argument("--per-class", type=int, default=50, help="examples per class (default: 50)")
    parser.add_argument("--shots", type=int, default=4, help="real examples in each prompt (default: 4)")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="default: 40")
    parser.add_argument("--seed", type=int, default=42, help="default: 42")


def run(args: argparse.Namespace) -> int:
    try:
        examples = load_examples(args.train, args.task)
        labels = rare_labels(examples, args.classes)
        if not labels:
            raise DataError(f"{args.train}: no class is under half the largest; name them with --classes")
        written = generate(args.generator, examples, labels, args.per_class, args.seed, args.shots, args.max_new_tokens)
    except (DataError, OSError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        writer.writerows([example.text, example.label] for example in written)
    print(f"wrote {len(written)} examples for {', '.join(labels)} to {args.output} "
          f"(train with: hflabels train --synthetic {args.output} ...)")  # fmt: skip
    return 0
