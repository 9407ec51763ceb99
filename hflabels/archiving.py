"""Bundle a transformers model folder, its label mapping and the handler into a TorchServe .mar.

The folder is checked first (config, weights, tokenizer, mapping against num_labels, task against
the model's architecture) with the checks the handler runs at load (``handler.engine.model_folder``,
which loads no task runner). The archive holds only what serving needs: the handler package with
its subpackages, config and tokenizer files, safetensors weights, index_to_name.json and the
model-config.yaml (with the task written in).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from handler.api.build_info import write_build_info
from handler.api.errors import ConfigurationError
from handler.api.labels import MAPPING_FILE_NAME, label_set_file_name, label_set_files, labels_from_id2label
from handler.api.settings import HandlerSettings
from handler.api.tasks import Task
from handler.engine.model_folder import CheckedFolder, check_model_folder
from handler.engine.model_loading import PICKLED_WEIGHT_PATTERNS
from hflabels.paths import HANDLER_PACKAGE, MODEL_CONFIG, MODEL_STORE

ENTRY_MODULE = HANDLER_PACKAGE / "torchserve_handler.py"
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
    # dtype auto's probe texts (handler/engine/precision.py): hflabels train writes them.
    "probe.txt",
    # The input drift test's reference (handler.monitoring.reference.inputs): train / calibrate write it.
    "drift-reference.npy",
)


class ArchiveError(Exception):
    pass


def load_model_config(model_dir: Path, config: Path | None, task: Task | None) -> dict:
    """The model-config.yaml to archive: ``config``, else the folder's own, else the repository's;
    ``task`` (when given) replaces its handler.task."""
    path = config or (model_dir / "model-config.yaml" if (model_dir / "model-config.yaml").exists() else MODEL_CONFIG)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such config file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ArchiveError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(document, dict):
        raise ArchiveError(f"{path}: must be a YAML mapping")
    handler_section = dict(document.get("handler") or {})
    if task is not None:
        handler_section["task"] = task.value
    document["handler"] = handler_section
    return document


def renamed_label_settings(handler: Mapping[str, Any], renames: Mapping[str, str]) -> dict[str, Any]:
    """The handler section with every label name in label_thresholds, calibration, class-conditional
    conformal thresholds and the drift reference renamed (the flat spelling and the grouped one alike)."""

    def rename_keys(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {renames.get(str(key), key): item for key, item in value.items()}

    def rename_calibration(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        renamed = dict(value)
        for key in ("temperature", "logit_adjustment"):
            if isinstance(renamed.get(key), Mapping):
                renamed[key] = rename_keys(renamed[key])
        return renamed

    section = dict(handler)
    groups = [section]
    if isinstance(section.get("classification"), Mapping):
        section["classification"] = dict(section["classification"])
        groups.append(section["classification"])
    for group in groups:
        if "label_thresholds" in group:
            group["label_thresholds"] = rename_keys(group["label_thresholds"])
        if "calibration" in group:
            group["calibration"] = rename_calibration(group["calibration"])
    conformal = section.get("conformal")
    if isinstance(conformal, Mapping) and isinstance(conformal.get("thresholds"), Mapping):
        section["conformal"] = {**conformal, "thresholds": {level: rename_keys(t) for level, t in
                                                            conformal["thresholds"].items()}}  # fmt: skip
    monitoring = section.get("monitoring")
    if isinstance(monitoring, Mapping) and isinstance(monitoring.get("reference"), Mapping):
        reference = dict(monitoring["reference"])
        reference["labels"] = rename_keys(reference.get("labels"))
        section["monitoring"] = {**monitoring, "reference": reference}
    return section


def check_label_settings(settings: HandlerSettings, labels: Sequence[str]) -> None:
    """Every label a setting names must be one the archive serves (the worker would refuse it)."""
    classification = settings.classification
    named = set(classification.label_thresholds)
    if classification.calibration is not None:
        named |= set(classification.calibration.logit_adjustment)
        if isinstance(classification.calibration.temperature, Mapping):
            named |= set(classification.calibration.temperature)
    if settings.conformal is not None:
        for threshold in settings.conformal.thresholds.values():
            if isinstance(threshold, Mapping):
                named |= set(threshold)
    if settings.monitoring.reference is not None:
        named |= set(settings.monitoring.reference.labels)
    unknown = sorted(named - set(labels))
    if unknown:
        raise ConfigurationError(
            f"model-config.yaml names label(s) {unknown} in handler.classification (calibration or "
            f"label_thresholds), handler.conformal or handler.monitoring.reference, but the archive serves "
            f"{list(labels)}: use those names there, or archive with the mapping the model was trained with"
        )


def serving_files(model_dir: Path, allow_pickle: bool) -> list[Path]:
    patterns = SERVING_FILES + (PICKLED_WEIGHT_PATTERNS if allow_pickle else ())
    return sorted(
        path for path in model_dir.iterdir() if path.is_file() and any(fnmatch.fnmatch(path.name, p) for p in patterns)
    )


def stage(
    model_dir: Path,
    mapping: Path | None,
    allow_pickle: bool,
    folder: Path,
    label_sets: Mapping[str, Path] | None = None,
) -> None:
    """Lay out the archive's extra files: model files (linked), the mappings, the handler package."""
    for path in serving_files(model_dir, allow_pickle):
        (folder / path.name).symlink_to(path.resolve())
    if mapping is not None:
        shutil.copyfile(mapping, folder / MAPPING_FILE_NAME)
    for label_set, path in (label_sets or {}).items():
        shutil.copyfile(path, folder / label_set_file_name(label_set))
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
    label_sets: Mapping[str, Path] | None = None,
    probe: Path | None = None,
) -> Path:
    """Run torch-model-archiver on a staged copy of the folder; no checks (``archive`` checks first)."""
    export_path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="archive-") as scratch:
        extra = Path(scratch) / "extra"
        extra.mkdir()
        stage(model_dir, mapping, allow_pickle, extra, label_sets)
        if probe is not None:
            shutil.copyfile(probe, extra / "probe.txt")
        write_build_info(extra)
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


@dataclass(frozen=True)
class Archived:
    path: Path
    task: Task
    labels: tuple[str, ...] | None
    label_sets: tuple[str, ...] = ()

    def summary(self) -> str:
        """``wrote PATH (task, N labels: a, b, c; 83.8 MB)``"""
        labels = ""
        if self.labels:
            more = ", ..." if len(self.labels) > 8 else ""
            labels = f", {len(self.labels)} labels: {', '.join(self.labels[:8])}{more}"
        sets = f"; label sets: {', '.join(self.label_sets)}" if self.label_sets else ""
        return f"wrote {self.path} ({self.task.value}{labels}{sets}; {self.path.stat().st_size / 1e6:.1f} MB)"


def folder_labels(model_dir: Path, checked: CheckedFolder) -> tuple[str, ...]:
    """The names the folder itself gives (its own index_to_name.json, else config.json's id2label),
    read without the "no mapping" warning: a --mapping given on the command line supplies the names."""
    if (model_dir / MAPPING_FILE_NAME).exists():
        return check_model_folder(model_dir, HandlerSettings(task=checked.task), None, {}).labels or ()
    return labels_from_id2label(getattr(checked.config, "id2label", None) or {}, checked.config.num_labels)


def archive(
    model_dir: Path,
    name: str,
    *,
    task: Task | None = None,
    mapping: Path | None = None,
    label_sets: Mapping[str, Path] | None = None,
    config: Path | None = None,
    document: dict | None = None,
    export_path: Path = MODEL_STORE,
    version: str = "1.0",
    probe: Path | None = None,
) -> Archived:
    """Check ``model_dir`` and archive it as ``export_path/NAME.mar``; raises ArchiveError naming the
    problem. ``document`` (a parsed model-config) takes the place of ``config`` when given."""
    check_model_name(name)
    if not model_dir.is_dir():
        raise ArchiveError(f"{model_dir}: not a folder")
    if document is None:
        document = load_model_config(model_dir, config, task)
    else:
        document = {**document, "handler": dict(document.get("handler") or {})}
    try:
        settings = HandlerSettings.from_mapping(document["handler"])
        for path in [mapping, *(label_sets or {}).values()]:
            if path is not None and not path.is_file():
                raise ArchiveError(f"{path}: no such mapping file")
        if label_sets is None:
            label_sets = label_set_files(model_dir)
        for label_set in label_sets:
            label_set_file_name(label_set)  # the name must suit a file name
        checked = check_model_folder(model_dir, settings, mapping, label_sets)
        if mapping is not None and checked.labels is not None:
            # Settings that name labels follow a renaming by the mapping (matched by index).
            own = folder_labels(model_dir, checked)
            renames = {old: new for old, new in zip(own, checked.labels) if old != new}
            if renames and len(own) == len(checked.labels):
                document["handler"] = renamed_label_settings(document["handler"], renames)
                settings = HandlerSettings.from_mapping(document["handler"])
        if checked.labels is not None:
            check_label_settings(settings, checked.labels)
    except ConfigurationError as error:
        raise ArchiveError(str(error)) from None
    document["handler"]["task"] = checked.task.value
    if mapping is None and checked.labels is not None and (model_dir / MAPPING_FILE_NAME).exists():
        mapping = model_dir / MAPPING_FILE_NAME
    mapping = mapping if checked.labels is not None else None
    label_sets = label_sets if checked.labels is not None else {}
    if probe is not None and (not probe.is_file() or not probe.read_text(encoding="utf-8").strip()):
        raise ArchiveError(f"--probe {probe}: not a file of texts, one per line")
    output = build(
        model_dir, name, document, mapping, export_path, version, settings.loading.allow_pickle_weights, label_sets,
        probe,
    )  # fmt: skip
    return Archived(output, checked.task, checked.labels, tuple(checked.label_sets))
