"""The task modes the handler serves, and how a model's config names them."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from handler.api.choices import enum_member, enum_values
from handler.api.errors import ConfigurationError


class Task(str, enum.Enum):
    """A serving mode; the value is what ``handler.task`` and ``archive.py --task`` accept."""

    SEQUENCE_CLASSIFICATION = "sequence_classification"
    TOKEN_CLASSIFICATION = "token_classification"
    QUESTION_ANSWERING = "question_answering"
    TEXT_GENERATION = "text_generation"
    # An NLI sequence classifier scoring labels the request names (entailment of "This example is {}.").
    ZERO_SHOT_CLASSIFICATION = "zero_shot_classification"

    @classmethod
    def parse(cls, value: object) -> Task:
        """A task by its value or by the transformers pipeline's name for it (``text-classification``)."""
        task = enum_member(cls, PIPELINE_TASKS.get(value, value) if isinstance(value, str) else value)
        if task is None:
            raise ConfigurationError(
                f"unknown task {value!r}; valid tasks are: {enum_values(cls)} "
                f"(or the pipelines' names: {', '.join(PIPELINE_TASKS)})"
            )
        return task

    @classmethod
    def choices(cls) -> list[str]:
        """What a ``--task`` flag accepts: the values, then the pipelines' names."""
        return [task.value for task in cls] + list(PIPELINE_TASKS)

    @property
    def streams(self) -> bool:
        """Whether requests may ask for their answer as a stream of events ("stream": true)."""
        return self is Task.TEXT_GENERATION

    @property
    def uses_label_mapping(self) -> bool:
        return self in (Task.SEQUENCE_CLASSIFICATION, Task.TOKEN_CLASSIFICATION, Task.ZERO_SHOT_CLASSIFICATION)


# transformers' pipeline task names, accepted wherever a task is named.
PIPELINE_TASKS: dict[str, str] = {
    "text-classification": "sequence_classification",
    "token-classification": "token_classification",
    "question-answering": "question_answering",
    "text-generation": "text_generation",
    "zero-shot-classification": "zero_shot_classification",
}

# Architecture class-name suffixes, as written in a model's config.json "architectures".
_ARCHITECTURE_SUFFIXES: dict[str, Task] = {
    "ForSequenceClassification": Task.SEQUENCE_CLASSIFICATION,
    "ForTokenClassification": Task.TOKEN_CLASSIFICATION,
    "ForQuestionAnswering": Task.QUESTION_ANSWERING,
    "ForCausalLM": Task.TEXT_GENERATION,
    "LMHeadModel": Task.TEXT_GENERATION,
}


# Zero-shot runs an NLI sequence classifier: a model is served that way only when asked for.
_ALSO_SERVED_AS: dict[Task, Task] = {Task.SEQUENCE_CLASSIFICATION: Task.ZERO_SHOT_CLASSIFICATION}


def task_of_architecture(architecture: str) -> Task | None:
    for suffix, task in _ARCHITECTURE_SUFFIXES.items():
        if architecture.endswith(suffix):
            return task
    return None


def resolve_task(requested: Task | None, architectures: Sequence[str] | None) -> Task:
    """The task to serve: the requested one, checked against what the model was built for."""
    declared = [task for task in map(task_of_architecture, architectures or ()) if task is not None]
    if requested is None:
        if not declared:
            raise ConfigurationError(
                f"cannot infer the task from the model's architectures {list(architectures or [])}; "
                f"set handler.task in model-config.yaml (one of: {enum_values(Task)})"
            )
        return declared[0]
    declared += [_ALSO_SERVED_AS[task] for task in declared if task in _ALSO_SERVED_AS]
    if declared and requested not in declared:
        raise ConfigurationError(
            f"the model config declares {architectures[0]} ({declared[0].value}) "  # type: ignore[index]
            f"but the task is {requested.value}; archive a {requested.value} model or change the task"
        )
    return requested


class Objective(str, enum.Enum):
    """What a model is trained for (``hflabels train --task``), and the task it is served as: the
    one vocabulary training, evaluation and serving share."""

    SINGLE_LABEL = "single_label"
    SENTENCE_PAIR = "sentence_pair"
    MULTI_LABEL = "multi_label"
    TOKEN_CLASSIFICATION = "token_classification"
    # One score per text (or pair), served as {"score": x} (text,[text_pair,]score).
    REGRESSION = "regression"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str) -> Objective:
        """An objective by its value or the transformers pipeline's name (``text-classification``:
        single_label, ``token-classification``: token_classification)."""
        aliases = {"text-classification": cls.SINGLE_LABEL, "token-classification": cls.TOKEN_CLASSIFICATION}
        found = aliases.get(value) or enum_member(cls, value)
        if found is None:
            raise ValueError(f"unknown task {value!r}; choose one of {', '.join(cls.choices())}")
        return found

    @classmethod
    def choices(cls) -> list[str]:
        return [objective.value for objective in cls] + ["text-classification", "token-classification"]

    @property
    def task(self) -> Task:
        if self is Objective.TOKEN_CLASSIFICATION:
            return Task.TOKEN_CLASSIFICATION
        return Task.SEQUENCE_CLASSIFICATION

    @property
    def problem_type(self) -> str | None:
        """``config.problem_type`` of a model trained for it (None: the task decides)."""
        return {
            Objective.SINGLE_LABEL: "single_label_classification",
            Objective.SENTENCE_PAIR: "single_label_classification",
            Objective.MULTI_LABEL: "multi_label_classification",
            Objective.REGRESSION: "regression",
        }.get(self)

    @property
    def classifies(self) -> bool:
        """Whether outputs are classes (labels, calibration) rather than a score."""
        return self is not Objective.REGRESSION
