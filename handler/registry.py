"""Which runner serves which task (the one place a new task mode is added), and building one
from a model folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PretrainedConfig

from handler.api.labels import MAPPING_FILE_NAME, resolve_labels
from handler.engine.model_loading import (
    LoadedModel,
    apply_thread_settings,
    has_tokenizer_files,
    load_config,
    load_model,
    load_tokenizer,
    weights_format,
)
from handler.tasks.question_answering import QuestionAnsweringRunner
from handler.engine.runner import TaskRunner
from handler.tasks.sequence_classification import SequenceClassificationRunner
from handler.api.settings import HandlerSettings
from handler.api.tasks import Task, resolve_task
from handler.tasks.text_generation import TextGenerationRunner
from handler.tasks.token_classification import TokenClassificationRunner

RUNNERS: dict[Task, type[TaskRunner]] = {
    Task.SEQUENCE_CLASSIFICATION: SequenceClassificationRunner,
    Task.TOKEN_CLASSIFICATION: TokenClassificationRunner,
    Task.QUESTION_ANSWERING: QuestionAnsweringRunner,
    Task.TEXT_GENERATION: TextGenerationRunner,
}

assert set(RUNNERS) == set(Task), "every task needs a runner"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckedFolder:
    config: PretrainedConfig
    task: Task
    labels: tuple[str, ...] | None


def check_model_folder(model_dir: Path, settings: HandlerSettings, mapping_path: Path | None = None) -> CheckedFolder:
    """Everything about a model folder that can be checked without loading weights.

    ``scripts/archive.py`` runs this before archiving and ``initialize()`` before loading, so a
    broken folder fails both with the same message.
    """
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


def build_runner(model_dir: Path, settings: HandlerSettings, device: torch.device) -> TaskRunner:
    checked = check_model_folder(model_dir, settings)
    runner_class = RUNNERS[checked.task]
    tokenizer = load_tokenizer(model_dir, require_fast=runner_class.needs_fast_tokenizer)
    apply_thread_settings(settings)
    model = load_model(model_dir, runner_class.auto_model_class, checked.config, settings, device)
    return runner_class(LoadedModel(model, tokenizer, checked.config, device), settings, checked.labels)
