import argparse

import pytest

from handler.api.errors import ConfigurationError
from handler.api.tasks import Task, resolve_task, task_of_architecture
from handler.registry import RUNNERS


def test_every_task_is_offered_by_archive_and_documented_in_the_docs():
    from pathlib import Path

    from hflabels.commands import archive

    repo = Path(__file__).resolve().parents[2]
    pages = "".join(page.read_text(encoding="utf-8") for page in (repo / "docs" / "tasks").glob("*.md"))
    readme = (repo / "README.md").read_text(encoding="utf-8")
    parser = argparse.ArgumentParser()
    archive.configure(parser)
    [task_flag] = [action for action in parser._actions if "--task" in action.option_strings]
    assert list(task_flag.choices) == Task.choices()
    assert Task.choices()[: len(Task)] == [task.value for task in Task]
    for task in Task:
        assert task.value in pages, f"{task.value} has no page under docs/tasks"
        assert task.value in readme, f"{task.value} is not in the README's table of task modes"
        assert Task.parse(task.value) is task


def test_training_objectives_are_served_as_handler_tasks():
    from handler.api.tasks import Objective
    from hflabels.training.data import TASKS

    assert TASKS == tuple(objective.value for objective in Objective)
    assert {objective: objective.task for objective in Objective} == {
        Objective.SINGLE_LABEL: Task.SEQUENCE_CLASSIFICATION,
        Objective.SENTENCE_PAIR: Task.SEQUENCE_CLASSIFICATION,
        Objective.MULTI_LABEL: Task.SEQUENCE_CLASSIFICATION,
        Objective.TOKEN_CLASSIFICATION: Task.TOKEN_CLASSIFICATION,
        Objective.REGRESSION: Task.SEQUENCE_CLASSIFICATION,
    }
    assert Objective.MULTI_LABEL.problem_type == "multi_label_classification"
    assert [task for task in Task if task.streams] == [Task.TEXT_GENERATION]


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ConfigurationError, match="unknown task 'ner'; valid tasks are: sequence_classification, "):
        Task.parse("ner")


def test_every_task_has_a_runner_for_it():
    assert all(RUNNERS[task].task is task for task in Task)


@pytest.mark.parametrize(
    ("architecture", "task"),
    [
        ("BertForSequenceClassification", Task.SEQUENCE_CLASSIFICATION),
        ("RobertaForTokenClassification", Task.TOKEN_CLASSIFICATION),
        ("DistilBertForQuestionAnswering", Task.QUESTION_ANSWERING),
        ("LlamaForCausalLM", Task.TEXT_GENERATION),
        ("GPT2LMHeadModel", Task.TEXT_GENERATION),
        ("BertModel", None),
    ],
)
def test_task_of_architecture(architecture, task):
    assert task_of_architecture(architecture) is task


def test_task_is_inferred_from_the_architecture():
    assert resolve_task(None, ["BertForTokenClassification"]) is Task.TOKEN_CLASSIFICATION


def test_a_task_that_contradicts_the_model_is_refused():
    with pytest.raises(
        ConfigurationError, match="declares BertForSequenceClassification .* but the task is question_answering"
    ):
        resolve_task(Task.QUESTION_ANSWERING, ["BertForSequenceClassification"])


def test_a_task_is_needed_when_the_architecture_says_nothing():
    with pytest.raises(ConfigurationError, match="set handler.task"):
        resolve_task(None, ["BertModel"])
    assert resolve_task(Task.TEXT_GENERATION, ["BertModel"]) is Task.TEXT_GENERATION


def test_an_nli_classifier_is_served_zero_shot_only_when_asked():
    architectures = ["BertForSequenceClassification"]
    assert resolve_task(None, architectures) is Task.SEQUENCE_CLASSIFICATION
    assert resolve_task(Task.ZERO_SHOT_CLASSIFICATION, architectures) is Task.ZERO_SHOT_CLASSIFICATION
    with pytest.raises(ConfigurationError, match="declares BertForTokenClassification"):
        resolve_task(Task.ZERO_SHOT_CLASSIFICATION, ["BertForTokenClassification"])
