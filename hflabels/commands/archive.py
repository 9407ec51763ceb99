"""Bundle a transformers model folder, its label mapping and this handler into a TorchServe .mar.

The folder is checked first, with the checks the handler runs at load; a problem exits with
status 2 and one line saying what is wrong.

    hflabels archive build/my-model --name reviews [--mapping mappings/sentiment_3way.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handler.api.labels import MAPPING_FILE_NAME
from handler.api.tasks import Task
from hflabels.paths import MODEL_STORE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="a save_pretrained folder (config, weights, tokenizer)")
    parser.add_argument("--name", required=True, help="model name: the NAME in /predictions/NAME")
    parser.add_argument("--task", choices=Task.choices(), metavar="TASK",
                        help=f"overrides the config's handler.task: {', '.join(Task.choices())}")  # fmt: skip
    parser.add_argument(
        "--mapping",
        action="append",
        default=[],
        metavar="[SET=]FILE",
        help=f"label mapping (default: MODEL_DIR/{MAPPING_FILE_NAME}); SET=FILE adds a label set a request "
        "picks with parameters.label_set (e.g. de=mappings/sentiment_3way.de.json); repeat for each",
    )
    parser.add_argument(
        "--config", type=Path, help="model-config.yaml (default: MODEL_DIR/model-config.yaml, else the repo's)"
    )
    parser.add_argument("--export-path", type=Path, default=MODEL_STORE, help="where NAME.mar goes")
    parser.add_argument("--version", default="1.0", help="the archive's model version")
    parser.add_argument("--probe", type=Path, metavar="FILE",
                        help="texts, one per line, that dtype auto checks low precision on "
                        "(default: MODEL_DIR/probe.txt, which hflabels train writes)")  # fmt: skip


def mappings_of(values: list[str]) -> tuple[Path | None, dict[str, Path] | None]:
    """(the main mapping, the label sets) from ``--mapping FILE`` and ``--mapping SET=FILE``."""
    from hflabels.archiving import ArchiveError

    main = [Path(value) for value in values if "=" not in value]
    if len(main) > 1:
        raise ArchiveError(f"one main mapping at most, got {len(main)}; name the others SET=FILE")
    sets = dict(value.split("=", 1) for value in values if "=" in value)
    return (main[0] if main else None), ({name: Path(path) for name, path in sets.items()} or None)


def run(args: argparse.Namespace) -> int:
    from hflabels.archiving import ArchiveError, archive  # loads torch: only when archiving

    try:
        mapping, label_sets = mappings_of(args.mapping)
        archived = archive(
            args.model_dir,
            args.name,
            task=Task.parse(args.task) if args.task else None,
            mapping=mapping,
            label_sets=label_sets,
            config=args.config,
            export_path=args.export_path,
            version=args.version,
            probe=args.probe,
        )
    except ArchiveError as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    print(archived.summary())
    return 0
