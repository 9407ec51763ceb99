"""Extractive question answering from start/end logits: pure functions.

transformers 5 removed the question-answering pipeline; these follow the 4.x pipeline
(``select_starts_ends``, ``decode_spans``, ``postprocess``, ``get_answer`` in 4.4x-4.5x) so answers
equal what users had:
- per window, every token that is not context is masked (the CLS token stays), start and end
  logits are softmaxed separately, and a span (i, j) scores ``p_start[i] * p_end[j]`` for
  ``i <= j < i + max_answer_len``;
- the null score is ``p_start[0] * p_end[0]`` taken before position 0 is zeroed; the answer ""
  gets the minimum of it over windows (only with ``handle_impossible_answer``);
- each window keeps its best ``top_k * 2 + 10`` spans (``top_k`` without ``align_to_words``),
  chosen among all positions and only then stripped of spans that start or end outside the
  context, so a span can score 0;
- spans map to character offsets, widened to whole words unless ``align_to_words`` is false;
- a span whose text equals (case-insensitively) an answer already found, in any window at any
  position, adds its score to that answer, which keeps the first occurrence's offsets;
- the answers are then sorted by score and cut to ``top_k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NO_NULL_SCORE = 1_000_000.0  # larger than any probability: "no null score seen yet", as the pipeline starts


@dataclass(frozen=True)
class TokenSpan:
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class WindowSpans:
    spans: list[TokenSpan]
    null_score: float


def candidates_per_window(top_k: int, align_to_words: bool) -> int:
    """How many spans each window keeps: more when aligning to words may merge some away."""
    return top_k * 2 + 10 if align_to_words else top_k


def select_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    answerable: np.ndarray,
    candidates: int,
    max_answer_len: int,
) -> WindowSpans:
    """The best ``candidates`` spans of one window that lie in the context, best first.

    ``answerable`` is true for the context tokens and the CLS token; everything else (question,
    separators) can neither start nor end an answer and takes no part in the softmax.
    """
    answerable = np.asarray(answerable, dtype=bool)
    start = _masked_softmax(np.asarray(start_logits, dtype=np.float32), answerable)
    end = _masked_softmax(np.asarray(end_logits, dtype=np.float32), answerable)
    null_score = float(start[0] * end[0])
    start[0] = end[0] = 0.0

    # scores[i, j] = start[i] * end[j]; kept where j >= i and j - i < max_answer_len.
    scores = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = scores.ravel()
    # The best spans of the whole matrix, ties and zeros included, as the 4.x pipeline picks them.
    if candidates == 1:
        best = np.array([np.argmax(flat)])
    elif flat.size <= candidates:
        # The pipeline's `<` makes argpartition raise when the sizes are equal; ranking all is its meaning.
        best = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, candidates)[:candidates]
        best = best[np.argsort(-flat[best])]
    starts, ends = np.unravel_index(best, scores.shape)
    inside = answerable[starts] & answerable[ends]
    spans = [TokenSpan(int(s), int(e), float(scores[s, e])) for s, e in zip(starts[inside], ends[inside])]
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
    """Answers from ``(start_char, end_char, score)`` spans of all windows (in window order, each
    window's best first), the same text merged, best first, at most ``top_k``."""
    answers: list[Answer] = []
    by_text: dict[str, int] = {}
    for start, end, score in found:
        text = context[start:end]
        same = by_text.get(text.lower())
        if same is None:
            by_text[text.lower()] = len(answers)
            answers.append(Answer(score, start, end, text))
        else:
            kept = answers[same]
            answers[same] = Answer(kept.score + score, kept.start, kept.end, kept.answer)
    if handle_impossible_answer:
        answers.append(Answer(min_null_score, 0, 0, ""))
    return sorted(answers, key=lambda answer: answer.score, reverse=True)[:top_k]
