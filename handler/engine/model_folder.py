"""Everything about a model folder that can be checked without loading weights.

``hflabels archive`` runs this before archiving and ``initialize()`` before loading, so a broken
folder fails both with the same message. It imports no task runner.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PretrainedConfig

from handler.api.labels import MAPPING_FILE_NAME, label_set_files, load_label_sets, resolve_labels
from handler.api.settings import HandlerSettings
from handler.api.tasks import Task, resolve_task
from handler.engine.model_loading import has_tokenizer_files, load_config, load_tokenizer, weights_format

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckedFolder:
    config: PretrainedConfig
    task: Task
    labels: tuple[str, ...] | None
    # Other names for the same outputs, by set name (index_to_name.<set>.json).
    label_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)


def check_model_folder(
    model_dir: Path,
    settings: HandlerSettings,
    mapping_path: Path | None = None,
    label_set_paths: Mapping[str, Path] | None = None,
) -> CheckedFolder:
    """``mapping_path`` and ``label_set_paths`` default to the folder's own files."""
    config = load_config(model_dir)
    task = resolve_task(settings.task, getattr(config, "architectures", None))
    weights_format(model_dir, settings.loading.allow_pickle_weights)
    if not has_tokenizer_files(model_dir):
        load_tokenizer(model_dir, require_fast=False)  # raises the "no tokenizer files" message
    if not task.uses_label_mapping:
        return CheckedFolder(config, task, None)
    mapping = mapping_path if mapping_path is not None else model_dir / MAPPING_FILE_NAME
    labels = resolve_labels(mapping, getattr(config, "id2label", None), config.num_labels, logger)
    sets = load_label_sets(label_set_paths if label_set_paths is not None else label_set_files(model_dir), labels)
    return CheckedFolder(config, task, labels, sets)
