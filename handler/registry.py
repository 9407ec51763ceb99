"""Which runner serves which task: the one place a new task mode is added."""

from __future__ import annotations

from pathlib import Path

import torch

from handler.api.settings import Backend, HandlerSettings
from handler.api.tasks import Task
from handler.engine.core_sharing import core_sharing_for
from handler.engine.encoder_runner import encoder_inputs
from handler.engine.execution import ExecutionPolicy
from handler.engine.load_measurements import LoadMeasurements, cache_root
from handler.engine.model_folder import check_model_folder
from handler.engine.model_loading import LoadedModel, apply_thread_settings, load_model, load_tokenizer
from handler.engine.openvino_backend import OpenVinoEncoder, check_openvino_settings
from handler.engine.precision import MAX_PROBE_TEXTS, PROBE_FILE
from handler.engine.runner import RunnerSetup, TaskRunner
from handler.tasks.question_answering import QuestionAnsweringRunner
from handler.tasks.sequence_classification import SequenceClassificationRunner
from handler.tasks.text_generation import TextGenerationRunner
from handler.tasks.token_classification import TokenClassificationRunner
from handler.tasks.zero_shot_classification import ZeroShotClassificationRunner

RUNNERS: dict[Task, type[TaskRunner]] = {
    Task.SEQUENCE_CLASSIFICATION: SequenceClassificationRunner,
    Task.TOKEN_CLASSIFICATION: TokenClassificationRunner,
    Task.QUESTION_ANSWERING: QuestionAnsweringRunner,
    Task.TEXT_GENERATION: TextGenerationRunner,
    Task.ZERO_SHOT_CLASSIFICATION: ZeroShotClassificationRunner,
}

assert set(RUNNERS) == set(Task), "every task needs a runner"


def probe_texts(model_dir: Path) -> tuple[str, ...]:
    """The folder's probe.txt, one text per line (at most MAX_PROBE_TEXTS); empty without one."""
    path = model_dir / PROBE_FILE
    if not path.is_file():
        return ()
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return tuple(line for line in lines if line)[:MAX_PROBE_TEXTS]


def build_runner(model_dir: Path, settings: HandlerSettings, device: torch.device, workers: int = 1) -> TaskRunner:
    """The runner of the model in ``model_dir``; ``workers``: how many workers of this model share the
    machine (their torch threads are divided among them unless a setting fixes them)."""
    checked = check_model_folder(model_dir, settings)
    runner_class = RUNNERS[checked.task]
    tokenizer = load_tokenizer(model_dir, require_fast=runner_class.needs_fast_tokenizer)
    all_threads = torch.get_num_threads()
    threads = apply_thread_settings(settings, workers)
    policy = ExecutionPolicy.from_settings(settings, device)
    openvino = settings.loading.backend is Backend.OPENVINO
    generates = runner_class is TextGenerationRunner
    if openvino:
        check_openvino_settings(settings, device, generates=generates)
    model = load_model(model_dir, runner_class.auto_model_class, checked.config, settings, device, policy.weight_dtype)
    if openvino:
        model = OpenVinoEncoder(model, encoder_inputs(tokenizer), threads)
    loaded = LoadedModel(model, tokenizer, checked.config, device)
    measurements = LoadMeasurements.for_model(model_dir, settings, device)
    runner = runner_class(
        RunnerSetup(loaded, settings, checked.labels, checked.label_sets, policy, probe_texts(model_dir), measurements)
    )
    runner.prepare_execution()
    # Text generation keeps its share: a lone request's generation is long, and another worker
    # would wait for all of it.
    if device.type == "cpu" and not openvino and not generates and settings.loading.torch_num_threads is None:
        runner.core_sharing = core_sharing_for(cache_root(), threads, all_threads, settings.loading.borrow_idle_cores)
    return runner
