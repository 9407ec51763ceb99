import warnings

import numpy as np
import pytest

from handler.postprocess.scoring import (
    Activation,
    LogitCalibration,
    activate,
    best_label,
    compare_served_scores,
    default_activation,
    labels_reaching,
    ranked_labels,
    sigmoid,
    softmax,
    threshold_vector,
)
from handler.postprocess.top_label import TopLabelMap

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


def _logits_for(probabilities: list[float]) -> np.ndarray:
    return np.log(np.array(probabilities))


def test_the_precision_check_reads_scores_after_a_steep_top_label_curve():
    # Two held-out confidences 5e-5 apart with accuracies 0.76 and 0.83 (as a fitted curve had):
    # a raw change of 0.0002 moves the served top score by 0.07, and the check must see that.
    curve = TopLabelMap(np.array([0.3, 0.81220, 0.81225, 0.99]), np.array([0.3, 0.76, 0.83, 0.95]))
    calibrated = LogitCalibration(np.zeros(3), np.ones(3), curve)
    reference = [_logits_for([0.8121, 0.1, 0.0879])]
    candidate = [_logits_for([0.8123, 0.1, 0.0877])]
    raw_change = 0.0002
    agree, change = compare_served_scores(reference, candidate, Activation.SOFTMAX, LogitCalibration.identity(3),
                                          False, np.full(3, 0.5))  # fmt: skip
    assert agree and change == pytest.approx(raw_change, abs=1e-9)
    agree, change = compare_served_scores(reference, candidate, Activation.SOFTMAX, calibrated, False, np.full(3, 0.5))
    served = [calibrated.top_label.apply(softmax(np.atleast_2d(x)))[0, 0] for x in (reference[0], candidate[0])]
    assert agree and change == pytest.approx(abs(served[1] - served[0])) and change > 0.06


def test_the_precision_check_compares_multi_label_decisions_at_their_thresholds():
    # The best label is the same, but a second label crosses its threshold: the answers differ.
    reference, candidate = [np.array([2.0, 0.01, -3.0])], [np.array([2.0, -0.01, -3.0])]
    agree, change = compare_served_scores(reference, candidate, Activation.SIGMOID, LogitCalibration.identity(3),
                                          True, np.full(3, 0.5))  # fmt: skip
    assert not agree and change == pytest.approx(sigmoid(np.array(0.01)) - sigmoid(np.array(-0.01)))
    same = compare_served_scores(reference, reference, Activation.SIGMOID, LogitCalibration.identity(3),
                                 True, np.full(3, 0.5))  # fmt: skip
    assert same == (True, 0.0)


def test_the_precision_check_of_a_regression_head_is_relative_to_its_size():
    # Before, a one-output head was compared through a softmax (always 1): any change passed.
    check = lambda a, b: compare_served_scores([np.array([a])], [np.array([b])], Activation.NONE,  # noqa: E731
                                               LogitCalibration.identity(1), False, np.full(1, 0.5))  # fmt: skip
    assert check(4.0, 4.2) == (True, pytest.approx(0.05))
    assert check(0.1, 0.12) == (True, pytest.approx(0.02))
