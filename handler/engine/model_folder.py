"""Everything about a model folder that can be checked without loading weights.

``hflabels archive`` runs this before archiving and ``initialize()`` before loading, so a broken
folder fails both with the same message. It imports no task runner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from transformers import PretrainedConfig

from handler.api.labels import MAPPING_FILE_NAME, resolve_labels
from handler.api.settings import HandlerSettings
from handler.api.tasks import Task, resolve_task
from handler.engine.model_loading import has_tokenizer_files, load_config, load_tokenizer, weights_format

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckedFolder:
    config: PretrainedConfig
    task: Task
    labels: tuple[str, ...] | None


def check_model_folder(model_dir: Path, settings: HandlerSettings, mapping_path: Path | None = None) -> CheckedFolder:
    config = load_config(model_dir)
    task = resolve_task(settings.task, getattr(config, "architectures", None))
    weights_format(model_dir, settings.allow_pickle_weights)
    if not has_tokenizer_files(model_dir):
        load_tokenizer(model_dir, require_fast=False)  # raises the "no tokenizer files" message
    labels = None
    if task.uses_label_mapping:
        mapping = mapping_path if mapping_path is not None else model_dir / MAPPING_FILE_NAME
        labels = resolve_labels(mapping, getattr(config, "id2label", None), config.num_labels, logger)
    return CheckedFolder(config, task, labels)
