import warnings

import numpy as np
import pytest

from handler.postprocess.scoring import (
    Activation,
    activate,
    best_label,
    default_activation,
    labels_reaching,
    ranked_labels,
    sigmoid,
    softmax,
    threshold_vector,
)

LABELS = ("negative", "neutral", "positive")


def test_softmax_matches_the_definition_and_sums_to_one():
    logits = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(softmax(logits), expected, rtol=1e-6)
    assert softmax(logits).sum() == pytest.approx(1.0)


def test_softmax_of_huge_logits_does_not_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = softmax(np.array([1000.0, 0.0, -1000.0], dtype=np.float32))
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0], atol=1e-12)


def test_sigmoid_matches_the_definition_and_stays_finite_at_extremes():
    logits = np.array([-3.0, 0.0, 2.5], dtype=np.float32)
    np.testing.assert_allclose(sigmoid(logits), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extremes = sigmoid(np.array([-1000.0, 1000.0], dtype=np.float32))
    np.testing.assert_allclose(extremes, [0.0, 1.0])
    assert sigmoid(logits).dtype == np.float32


def test_activate_none_returns_logits_unchanged():
    logits = np.array([-1.5, 4.0])
    assert activate(logits, Activation.NONE) is logits


@pytest.mark.parametrize(
    ("problem_type", "num_labels", "expected"),
    [
        ("regression", 1, Activation.NONE),
        ("multi_label_classification", 5, Activation.SIGMOID),
        (None, 1, Activation.SIGMOID),
        (None, 3, Activation.SOFTMAX),
        ("single_label_classification", 2, Activation.SOFTMAX),
    ],
)
def test_default_activation_follows_the_pipeline_rules(problem_type, num_labels, expected):
    assert default_activation(problem_type, num_labels) is expected


def test_best_label_breaks_ties_by_the_lower_index():
    assert best_label(np.array([0.4, 0.4, 0.2]), LABELS) == {"label": "negative", "score": pytest.approx(0.4)}


def test_best_label_of_a_one_label_model():
    assert best_label(np.array([0.73]), ("spam",)) == {"label": "spam", "score": pytest.approx(0.73)}


def test_ranked_labels_top_k_all_and_more_than_there_are():
    scores = np.array([0.1, 0.7, 0.2])
    assert [x["label"] for x in ranked_labels(scores, LABELS, 2)] == ["neutral", "positive"]
    assert [x["label"] for x in ranked_labels(scores, LABELS, None)] == ["neutral", "positive", "negative"]
    assert len(ranked_labels(scores, LABELS, 10)) == 3


def test_ranked_labels_keep_index_order_among_ties():
    assert [x["label"] for x in ranked_labels(np.array([0.3, 0.3, 0.4]), LABELS, None)] == [
        "positive",
        "negative",
        "neutral",
    ]


def test_scores_are_plain_python_floats():
    result = ranked_labels(np.array([0.1, 0.9], dtype=np.float32), ("a", "b"), None)
    assert all(type(item["score"]) is float for item in result)


def test_labels_reaching_thresholds_sorted_by_score():
    scores = np.array([0.6, 0.2, 0.9])
    chosen = labels_reaching(scores, LABELS, np.array([0.5, 0.5, 0.5]))
    assert [x["label"] for x in chosen] == ["positive", "negative"]


def test_labels_reaching_nothing_is_an_empty_list():
    assert labels_reaching(np.array([0.1, 0.2, 0.3]), LABELS, np.full(3, 0.5)) == []


def test_a_score_equal_to_its_threshold_reaches_it():
    assert [x["label"] for x in labels_reaching(np.array([0.5]), ("a",), np.array([0.5]))] == ["a"]


def test_per_label_thresholds_override_the_default():
    thresholds = threshold_vector(LABELS, 0.5, {"neutral": 0.1})
    np.testing.assert_array_equal(thresholds, [0.5, 0.1, 0.5])
    chosen = labels_reaching(np.array([0.3, 0.15, 0.3]), LABELS, thresholds)
    assert [x["label"] for x in chosen] == ["neutral"]
