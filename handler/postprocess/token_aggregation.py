"""Token-classification post-processing as pure functions, with the semantics of transformers'
``TokenClassificationPipeline``: per-token predictions from softmax scores, word aggregation
(``first``/``average``/``max``), B-/I- entity grouping (``simple`` and the word strategies),
ignored labels, and merging the entities of overlapping windows of one long text.

Tokenizer knowledge enters as plain data (token strings, offsets, special-token mask) and one
callable, ``join_tokens``, which turns token strings back into text (the tokenizer's
``convert_tokens_to_string``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Entity = dict[str, Any]
JoinTokens = Callable[[list[str]], str]


class AggregationStrategy(str, enum.Enum):
    NONE = "none"
    SIMPLE = "simple"
    FIRST = "first"
    AVERAGE = "average"
    MAX = "max"


@dataclass(frozen=True)
class TokenPrediction:
    word: str
    scores: np.ndarray
    start: int
    end: int
    index: int
    is_subword: bool


@dataclass(frozen=True)
class WindowTokens:
    """One window of a tokenized text, as plain data."""

    token_ids: Sequence[int]
    tokens: Sequence[str]
    offsets: Sequence[tuple[int, int]]
    special_tokens_mask: Sequence[int]
    # Position of this window's first token in the whole text's token sequence.
    index_offset: int = 0


def gather_predictions(
    text: str,
    window: WindowTokens,
    scores: np.ndarray,
    uses_subword_prefix: bool,
    unk_token_id: int | None,
) -> list[TokenPrediction]:
    predictions = []
    for position, token_scores in enumerate(scores):
        if window.special_tokens_mask[position]:
            continue
        word = window.tokens[position]
        start, end = (int(v) for v in window.offsets[position])
        word_ref = text[start:end]
        if uses_subword_prefix:
            is_subword = len(word) != len(word_ref)
        else:
            # Without a "##"-style prefix, a token that does not follow a space continues a word.
            is_subword = start > 0 and " " not in text[start - 1 : start + 1]
        if unk_token_id is not None and int(window.token_ids[position]) == unk_token_id:
            word, is_subword = word_ref, False
        predictions.append(TokenPrediction(word, token_scores, start, end, position + window.index_offset, is_subword))
    return predictions


def aggregate(
    predictions: Sequence[TokenPrediction],
    strategy: AggregationStrategy,
    labels: Sequence[str],
    join_tokens: JoinTokens,
) -> list[Entity]:
    if strategy in (AggregationStrategy.NONE, AggregationStrategy.SIMPLE):
        entities = []
        for prediction in predictions:
            best = int(prediction.scores.argmax())
            entities.append(
                {
                    "entity": labels[best],
                    "score": prediction.scores[best],
                    "index": prediction.index,
                    "word": prediction.word,
                    "start": prediction.start,
                    "end": prediction.end,
                }
            )
    else:
        entities = _aggregate_words(predictions, strategy, labels, join_tokens)
    if strategy is AggregationStrategy.NONE:
        return entities
    return group_entities(entities, join_tokens)


def _aggregate_words(
    predictions: Sequence[TokenPrediction],
    strategy: AggregationStrategy,
    labels: Sequence[str],
    join_tokens: JoinTokens,
) -> list[Entity]:
    words: list[list[TokenPrediction]] = []
    for prediction in predictions:
        if words and prediction.is_subword:
            words[-1].append(prediction)
        else:
            words.append([prediction])
    return [_aggregate_word(word, strategy, labels, join_tokens) for word in words]


def _aggregate_word(
    tokens: list[TokenPrediction], strategy: AggregationStrategy, labels: Sequence[str], join_tokens: JoinTokens
) -> Entity:
    if strategy is AggregationStrategy.FIRST:
        scores = tokens[0].scores
    elif strategy is AggregationStrategy.MAX:
        scores = max(tokens, key=lambda token: token.scores.max()).scores
    elif strategy is AggregationStrategy.AVERAGE:
        scores = np.nanmean(np.stack([token.scores for token in tokens]), axis=0)
    else:
        raise ValueError(f"{strategy.value} is not a word aggregation strategy")
    best = int(scores.argmax())
    return {
        "entity": labels[best],
        "score": scores[best],
        "word": join_tokens([token.word for token in tokens]),
        "start": tokens[0].start,
        "end": tokens[-1].end,
    }


def split_tag(entity_name: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; a name without a B-/I- prefix continues like an I- tag."""
    if entity_name.startswith("B-"):
        return "B", entity_name[2:]
    if entity_name.startswith("I-"):
        return "I", entity_name[2:]
    return "I", entity_name


def group_entities(entities: Sequence[Entity], join_tokens: JoinTokens) -> list[Entity]:
    """Adjacent tokens (or words) with the same tag, not interrupted by a B-, become one entity."""
    groups: list[list[Entity]] = []
    for entity in entities:
        if groups:
            bi, tag = split_tag(entity["entity"])
            _, last_tag = split_tag(groups[-1][-1]["entity"])
            if tag == last_tag and bi != "B":
                groups[-1].append(entity)
                continue
        groups.append([entity])
    return [_group(members, join_tokens) for members in groups]


def _group(members: list[Entity], join_tokens: JoinTokens) -> Entity:
    return {
        "entity_group": members[0]["entity"].split("-", 1)[-1],
        "score": np.nanmean([member["score"] for member in members]),
        "word": join_tokens([member["word"] for member in members]),
        "start": members[0]["start"],
        "end": members[-1]["end"],
    }


def drop_ignored(entities: Sequence[Entity], ignore_labels: Sequence[str]) -> list[Entity]:
    ignored = set(ignore_labels)
    return [
        entity
        for entity in entities
        if entity.get("entity") not in ignored and entity.get("entity_group") not in ignored
    ]


def merge_overlapping(entities: Sequence[Entity]) -> list[Entity]:
    """Entities of overlapping windows: of those that overlap, keep the longest, then the surest."""
    if not entities:
        return []
    ordered = sorted(entities, key=lambda entity: entity["start"])
    merged = []
    kept = ordered[0]
    for entity in ordered:
        if kept["start"] <= entity["start"] < kept["end"]:
            length, kept_length = entity["end"] - entity["start"], kept["end"] - kept["start"]
            if length > kept_length or (length == kept_length and entity["score"] > kept["score"]):
                kept = entity
        else:
            merged.append(kept)
            kept = entity
    merged.append(kept)
    return merged


def to_json(entities: Sequence[Entity]) -> list[Entity]:
    """Numpy scalars become plain floats and ints, which JSON can carry."""
    return [
        {
            key: float(value) if key == "score" else (int(value) if key in ("start", "end", "index") else value)
            for key, value in entity.items()
        }
        for entity in entities
    ]
