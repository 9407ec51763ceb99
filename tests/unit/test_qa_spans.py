import numpy as np
import pytest

from handler.postprocess.qa_spans import NO_NULL_SCORE, TokenSpan, char_span, rank_answers, select_spans

# Window layout: [CLS] q q [SEP] c c c c [SEP]
ANSWERABLE = np.array([True, False, False, False, True, True, True, True, False])


def logits(peaks):
    values = np.full(len(ANSWERABLE), -5.0, dtype=np.float32)
    for position, value in peaks.items():
        values[position] = value
    return values


def test_the_best_span_is_chosen():
    spans = select_spans(logits({5: 8.0}), logits({6: 8.0}), ANSWERABLE, candidates=1, max_answer_len=15)
    assert [(s.start, s.end) for s in spans.spans] == [(5, 6)]
    assert 0 < spans.spans[0].score <= 1


def test_an_end_before_its_start_is_never_chosen():
    # The strongest end (4) lies before the strongest start (6).
    spans = select_spans(logits({6: 9.0}), logits({4: 9.0, 7: 1.0}), ANSWERABLE, candidates=5, max_answer_len=15)
    assert spans.spans, "some span must remain"
    assert all(span.start <= span.end for span in spans.spans)
    assert (6, 4) not in [(s.start, s.end) for s in spans.spans]
    assert spans.spans[0].start == 6


def test_question_tokens_are_never_chosen_even_with_the_highest_logits():
    spans = select_spans(
        logits({1: 50.0, 5: 2.0}), logits({2: 50.0, 6: 2.0}), ANSWERABLE, candidates=10, max_answer_len=15
    )
    chosen = {position for span in spans.spans for position in (span.start, span.end)}
    assert chosen and chosen.isdisjoint({0, 1, 2, 3, 8})


def test_max_answer_len_bounds_the_span():
    spans = select_spans(logits({4: 9.0}), logits({7: 9.0}), ANSWERABLE, candidates=10, max_answer_len=2)
    assert all(span.end - span.start + 1 <= 2 for span in spans.spans)


def test_the_best_spans_are_sorted_by_score():
    spans = select_spans(
        logits({4: 3.0, 5: 2.0}), logits({5: 3.0, 6: 1.0}), ANSWERABLE, candidates=3, max_answer_len=15
    )
    scores = [span.score for span in spans.spans]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_null_score_is_the_cls_probability_product():
    start, end = logits({0: 4.0, 5: 1.0}), logits({0: 4.0, 6: 1.0})
    spans = select_spans(start, end, ANSWERABLE, candidates=1, max_answer_len=15)
    masked = np.where(ANSWERABLE, start, -10000.0)
    p_start = np.exp(masked - masked.max()) / np.exp(masked - masked.max()).sum()
    assert spans.null_score == pytest.approx(float(p_start[0] ** 2), rel=1e-5)
    assert all(span.start != 0 for span in spans.spans)


def test_char_span_widens_to_words_or_keeps_token_offsets():
    offsets = [(0, 0), (0, 3), (0, 0), (0, 5), (5, 8), (9, 12), (0, 0)]
    word_ids = [None, 0, None, 0, 0, 1, None]
    sequence_ids = [None, 0, None, 1, 1, 1, None]
    span = TokenSpan(4, 4, 0.5)  # the second piece of the first context word
    assert char_span(span, offsets, word_ids, sequence_ids, 1, align_to_words=True) == (0, 8)
    assert char_span(span, offsets, word_ids, sequence_ids, 1, align_to_words=False) == (5, 8)


def test_an_answer_in_the_second_window_is_found():
    context = "filler text here. The answer is Paris."
    first_window = (0, 6, 0.05)  # "filler"
    second_window = (32, 37, 0.6)  # "Paris"
    answers = rank_answers(
        [first_window, second_window], context, top_k=1, handle_impossible_answer=False, min_null_score=NO_NULL_SCORE
    )
    assert [(a.answer, a.start, a.end) for a in answers] == [("Paris", 32, 37)]
    assert context[answers[0].start : answers[0].end] == answers[0].answer


def test_the_same_answer_in_two_windows_adds_up():
    context = "Paris. paris."
    answers = rank_answers(
        [(0, 5, 0.2), (7, 12, 0.3)], context, top_k=2, handle_impossible_answer=False, min_null_score=NO_NULL_SCORE
    )
    assert len(answers) == 1
    assert answers[0].score == pytest.approx(0.5)
    assert (answers[0].start, answers[0].answer) == (0, "Paris")


def test_impossible_answer_competes_with_its_null_score():
    answers = rank_answers([(0, 3, 0.2)], "abc def", top_k=2, handle_impossible_answer=True, min_null_score=0.7)
    assert [a.to_json() for a in answers] == [
        {"score": 0.7, "start": 0, "end": 0, "answer": ""},
        {"score": 0.2, "start": 0, "end": 3, "answer": "abc"},
    ]
