import pytest

from handler.api.errors import ConfigurationError
from handler.api.tasks import Task, resolve_task, task_of_architecture
from handler.registry import RUNNERS


def test_task_values_are_the_documented_names():
    assert [task.value for task in Task] == [
        "sequence_classification",
        "token_classification",
        "question_answering",
        "text_generation",
        "zero_shot_classification",
    ]


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
