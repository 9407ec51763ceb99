#!/usr/bin/env python3
"""Bundle a transformers model folder, its label mapping and this handler into a TorchServe .mar.

    scripts/archive.py MODEL_DIR --name NAME [--task TASK] [--mapping FILE] [--config FILE]
                       [--export-path DIR] [--version V]

The folder is checked first (config, weights, tokenizer, mapping against num_labels, task against
the model's architecture) with the same checks the handler runs at load; a problem exits with
status 2 and one line saying what is wrong. The archive holds only what serving needs: the
handler package, config and tokenizer files, safetensors weights, index_to_name.json and the
model-config.yaml (with the task written in).
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from handler.api.errors import ConfigurationError  # noqa: E402
from handler.api.labels import MAPPING_FILE_NAME  # noqa: E402
from handler.engine.model_loading import PICKLED_WEIGHT_PATTERNS  # noqa: E402
from handler.registry import check_model_folder  # noqa: E402
from handler.api.settings import HandlerSettings  # noqa: E402
from handler.api.tasks import Task  # noqa: E402

HANDLER_PACKAGE = REPO_ROOT / "handler"
ENTRY_MODULE = HANDLER_PACKAGE / "torchserve_handler.py"
DEFAULT_CONFIG = REPO_ROOT / "model-config.yaml"
# Files of a save_pretrained folder that serving reads; training leftovers (optimizer states,
# training_args.bin, checkpoints) stay out of the archive.
SERVING_FILES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
)


class ArchiveError(Exception):
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="a save_pretrained folder (config, weights, tokenizer)")
    parser.add_argument("--name", required=True, help="model name: the NAME in /predictions/NAME")
    parser.add_argument("--task", choices=[task.value for task in Task], help="overrides the config's handler.task")
    parser.add_argument("--mapping", type=Path, help=f"label mapping (default: MODEL_DIR/{MAPPING_FILE_NAME})")
    parser.add_argument(
        "--config", type=Path, help="model-config.yaml (default: MODEL_DIR/model-config.yaml, else the repo's)"
    )
    parser.add_argument("--export-path", type=Path, default=REPO_ROOT / "model_store", help="where NAME.mar goes")
    parser.add_argument("--version", default="1.0")
    return parser.parse_args(argv)


def load_model_config(args: argparse.Namespace) -> dict:
    path = args.config or (
        args.model_dir / "model-config.yaml" if (args.model_dir / "model-config.yaml").exists() else DEFAULT_CONFIG
    )
    if not path.is_file():
        raise ArchiveError(f"{path}: no such config file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ArchiveError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(document, dict):
        raise ArchiveError(f"{path}: must be a YAML mapping")
    handler_section = dict(document.get("handler") or {})
    if args.task:
        handler_section["task"] = args.task
    document["handler"] = handler_section
    return document


def serving_files(model_dir: Path, allow_pickle: bool) -> list[Path]:
    patterns = SERVING_FILES + (PICKLED_WEIGHT_PATTERNS if allow_pickle else ())
    return sorted(
        path for path in model_dir.iterdir() if path.is_file() and any(fnmatch.fnmatch(path.name, p) for p in patterns)
    )


def stage(model_dir: Path, mapping: Path | None, allow_pickle: bool, folder: Path) -> None:
    """Lay out the archive's extra files: model files (linked), the mapping, the handler package."""
    for path in serving_files(model_dir, allow_pickle):
        (folder / path.name).symlink_to(path.resolve())
    if mapping is not None:
        shutil.copyfile(mapping, folder / MAPPING_FILE_NAME)
    # A sub-folder of --extra-files keeps its tree, so the package imports as `handler.*` there.
    shutil.copytree(HANDLER_PACKAGE, folder / "handler", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def archiver_command() -> list[str]:
    beside_python = Path(sys.executable).with_name("torch-model-archiver")
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("torch-model-archiver")
    if found:
        return [found]
    return [sys.executable, "-m", "model_archiver.model_packaging"]


def check_model_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ArchiveError(
            f"model name {name!r}: use letters, digits, '_', '-' and '.', starting with a letter or digit"
        )
    if name.lower().startswith("token"):
        # TorchServe 0.12 treats any management URL containing "/token" as its token API, so
        # GET /models/token... rewrites key_file.json and every later call is refused.
        raise ArchiveError(
            f"model name {name!r}: names starting with 'token' break TorchServe 0.12's management API "
            "under token authorization; choose another name (e.g. 'ner')"
        )


def build(
    model_dir: Path,
    name: str,
    document: dict,
    mapping: Path | None,
    export_path: Path,
    version: str = "1.0",
    allow_pickle: bool = False,
) -> Path:
    """Run torch-model-archiver on a staged copy of the folder; no checks (``archive`` checks first)."""
    export_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="archive-") as scratch:
        extra = Path(scratch) / "extra"
        extra.mkdir()
        stage(model_dir, mapping, allow_pickle, extra)
        config_file = Path(scratch) / "model-config.yaml"
        config_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        command = archiver_command() + [
            "--model-name", name,
            "--version", version,
            "--handler", str(ENTRY_MODULE),
            "--extra-files", str(extra),
            "--config-file", str(config_file),
            "--export-path", str(export_path),
            "--force",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ArchiveError(f"torch-model-archiver failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return export_path / f"{name}.mar"


def archive(args: argparse.Namespace) -> Path:
    check_model_name(args.name)
    model_dir = args.model_dir
    if not model_dir.is_dir():
        raise ArchiveError(f"{model_dir}: not a folder")
    document = load_model_config(args)
    try:
        settings = HandlerSettings.from_mapping(document["handler"])
        mapping = args.mapping
        if mapping is not None and not mapping.is_file():
            raise ArchiveError(f"{mapping}: no such mapping file")
        checked = check_model_folder(model_dir, settings, mapping)
    except ConfigurationError as error:
        raise ArchiveError(str(error)) from None
    document["handler"]["task"] = checked.task.value
    if mapping is None and checked.labels is not None and (model_dir / MAPPING_FILE_NAME).exists():
        mapping = model_dir / MAPPING_FILE_NAME
    mapping = mapping if checked.labels is not None else None
    output = build(
        model_dir, args.name, document, mapping, args.export_path, args.version, settings.allow_pickle_weights
    )
    labels = f", {len(checked.labels)} labels: {', '.join(checked.labels[:8])}" if checked.labels else ""
    more = ", ..." if checked.labels and len(checked.labels) > 8 else ""
    size_mb = output.stat().st_size / 1e6
    print(f"wrote {output} ({checked.task.value}{labels}{more}; {size_mb:.1f} MB)")
    return output


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        archive(args)
    except ArchiveError as error:
        print(f"archive.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
