"""Extractive question answering from start/end logits: pure functions.

transformers 5 removed the question-answering pipeline; these follow the 4.x pipeline's
semantics so answers match what users had:
- per window, every token that is not context is masked (the CLS token stays, for the null
  answer), start and end logits are softmaxed separately, and a span (i, j) scores
  ``p_start[i] * p_end[j]`` for ``i <= j < i + max_answer_len``;
- the null score is ``p_start[0] * p_end[0]`` (the CLS position), its minimum over windows is the
  null answer's score, and position 0 is then excluded from spans;
- spans map to character offsets, widened to whole words unless ``align_to_words`` is false;
- the same answer text found in several windows (case-insensitively) adds up its scores;
- the best ``top_k`` answers across windows are returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NO_NULL_SCORE = 1_000_000.0  # larger than any probability: "no null score seen yet"


@dataclass(frozen=True)
class TokenSpan:
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class WindowSpans:
    spans: list[TokenSpan]
    null_score: float


def select_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    answerable: np.ndarray,
    top_k: int,
    max_answer_len: int,
) -> WindowSpans:
    """The ``top_k`` best spans of one window.

    ``answerable`` is true for the context tokens and the CLS token; everything else (question,
    separators, padding) can neither start nor end an answer and takes no part in the softmax.
    """
    answerable = np.asarray(answerable, dtype=bool)
    start = _masked_softmax(np.asarray(start_logits, dtype=np.float32), answerable)
    end = _masked_softmax(np.asarray(end_logits, dtype=np.float32), answerable)
    null_score = float(start[0] * end[0])
    start[0] = end[0] = 0.0

    # outer[i, j] = start[i] * end[j]; keep j >= i and j - i < max_answer_len.
    candidates = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    candidates[~answerable, :] = 0.0
    candidates[:, ~answerable] = 0.0
    flat = candidates.ravel()
    positive = np.flatnonzero(flat > 0.0)
    if positive.size > top_k:
        positive = positive[np.argpartition(-flat[positive], top_k - 1)[:top_k]]
    positive = positive[np.argsort(-flat[positive], kind="stable")]
    starts, ends = np.unravel_index(positive, candidates.shape)
    spans = [TokenSpan(int(s), int(e), float(flat[i])) for s, e, i in zip(starts, ends, positive)]
    return WindowSpans(spans, null_score)


def _masked_softmax(logits: np.ndarray, answerable: np.ndarray) -> np.ndarray:
    masked = np.where(answerable, logits, np.float32(-10000.0))
    exp = np.exp(masked - masked.max())
    return exp / exp.sum()


def char_span(
    span: TokenSpan,
    offsets: Sequence[tuple[int, int]],
    word_ids: Sequence[int | None],
    sequence_ids: Sequence[int | None],
    context_sequence: int,
    align_to_words: bool,
) -> tuple[int, int]:
    """Character offsets in the context of a token span; whole words when ``align_to_words``."""
    start_word, end_word = word_ids[span.start], word_ids[span.end]
    if align_to_words and start_word is not None and end_word is not None:
        start_chars = [
            offsets[t][0]
            for t, (w, s) in enumerate(zip(word_ids, sequence_ids))
            if w == start_word and s == context_sequence
        ]
        end_chars = [
            offsets[t][1]
            for t, (w, s) in enumerate(zip(word_ids, sequence_ids))
            if w == end_word and s == context_sequence
        ]
        if start_chars and end_chars:
            return int(min(start_chars)), int(max(end_chars))
    return int(offsets[span.start][0]), int(offsets[span.end][1])


@dataclass(frozen=True)
class Answer:
    score: float
    start: int
    end: int
    answer: str

    def to_json(self) -> dict[str, object]:
        return {"score": self.score, "start": self.start, "end": self.end, "answer": self.answer}


def rank_answers(
    found: Sequence[tuple[int, int, float]],
    context: str,
    top_k: int,
    handle_impossible_answer: bool,
    min_null_score: float,
) -> list[Answer]:
    """Answers from ``(start_char, end_char, score)`` spans of all windows, best first."""
    answers: list[Answer] = []
    for start, end, score in found:
        text = context[start:end]
        same = next((i for i, a in enumerate(answers) if a.answer.lower() == text.lower()), None)
        if same is None:
            answers.append(Answer(score, start, end, text))
        else:
            kept = answers[same]
            answers[same] = Answer(kept.score + score, kept.start, kept.end, kept.answer)
    if handle_impossible_answer or not answers:
        null = min_null_score if min_null_score < NO_NULL_SCORE else 0.0
        answers.append(Answer(null, 0, 0, ""))
    return sorted(answers, key=lambda answer: answer.score, reverse=True)[:top_k]
