import numpy as np
import pytest

from handler.postprocess.token_aggregation import (
    AggregationStrategy,
    TokenPrediction,
    WindowTokens,
    aggregate,
    drop_ignored,
    gather_predictions,
    group_entities,
    merge_overlapping,
    split_tag,
    to_json,
)

LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def join(tokens):
    return "".join(token[2:] if token.startswith("##") else " " + token for token in tokens).strip()


def one_hot(label, confidence=0.9):
    scores = np.full(len(LABELS), (1 - confidence) / (len(LABELS) - 1))
    scores[LABELS.index(label)] = confidence
    return scores


def prediction(word, label, start, end, index, is_subword=False, confidence=0.9):
    return TokenPrediction(word, one_hot(label, confidence), start, end, index, is_subword)


def test_split_tag():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-LOC") == ("I", "LOC")
    assert split_tag("O") == ("I", "O")


def test_gather_skips_special_tokens_and_detects_subwords_by_prefix():
    text = "Alice visited Amsterdam"
    window = WindowTokens(
        token_ids=[2, 10, 11, 12, 13, 3],
        tokens=["[CLS]", "alice", "visited", "amster", "##dam", "[SEP]"],
        offsets=[(0, 0), (0, 5), (6, 13), (14, 20), (20, 23), (0, 0)],
        special_tokens_mask=[1, 0, 0, 0, 0, 1],
        index_offset=0,
    )
    scores = np.stack([one_hot("O")] * 6)
    predictions = gather_predictions(text, window, scores, uses_subword_prefix=True, unk_token_id=1)
    assert [p.word for p in predictions] == ["alice", "visited", "amster", "##dam"]
    assert [p.is_subword for p in predictions] == [False, False, False, True]
    assert [p.index for p in predictions] == [1, 2, 3, 4]


def test_unknown_tokens_take_the_text_they_cover():
    window = WindowTokens([2, 1, 3], ["[CLS]", "[UNK]", "[SEP]"], [(0, 0), (0, 2), (0, 0)], [1, 0, 1])
    predictions = gather_predictions("😀x", window, np.stack([one_hot("O")] * 3), True, unk_token_id=1)
    assert predictions[0].word == "😀x"
    assert not predictions[0].is_subword


def test_without_a_prefix_a_token_not_after_a_space_is_a_subword():
    window = WindowTokens([5, 6, 7], ["New", "York", "er"], [(0, 3), (4, 8), (8, 10)], [0, 0, 0])
    predictions = gather_predictions("New Yorker", window, np.stack([one_hot("O")] * 3), False, None)
    assert [p.is_subword for p in predictions] == [False, False, True]


def test_window_index_offset_gives_whole_text_positions():
    window = WindowTokens([2, 9, 3], ["[CLS]", "x", "[SEP]"], [(0, 0), (40, 41), (0, 0)], [1, 0, 1], index_offset=17)
    assert gather_predictions("x" * 41, window, np.stack([one_hot("O")] * 3), True, None)[0].index == 18


def test_none_strategy_labels_every_token():
    entities = aggregate([prediction("bob", "B-PER", 0, 3, 1)], AggregationStrategy.NONE, LABELS, join)
    assert to_json(entities) == [
        {"entity": "B-PER", "score": pytest.approx(0.9), "index": 1, "word": "bob", "start": 0, "end": 3}
    ]


def test_simple_groups_b_and_i_tags_and_splits_on_a_new_b():
    predictions = [
        prediction("ann", "B-PER", 0, 3, 1),
        prediction("lee", "I-PER", 4, 7, 2),
        prediction("bob", "B-PER", 8, 11, 3),
        prediction("in", "O", 12, 14, 4),
        prediction("oslo", "B-LOC", 15, 19, 5, confidence=0.7),
    ]
    entities = to_json(aggregate(predictions, AggregationStrategy.SIMPLE, LABELS, join))
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in entities] == [
        ("PER", "ann lee", 0, 7),
        ("PER", "bob", 8, 11),
        ("O", "in", 12, 14),
        ("LOC", "oslo", 15, 19),
    ]
    assert entities[3]["score"] == pytest.approx(0.7)
    assert all(set(e) == {"entity_group", "score", "word", "start", "end"} for e in entities)


def test_word_strategies_force_one_label_per_word():
    # "amsterdam" = amster (B-LOC, 0.6) + ##dam (B-PER, 0.9)
    word = [prediction("amster", "B-LOC", 0, 6, 1, confidence=0.6), prediction("##dam", "B-PER", 6, 9, 2, True, 0.9)]
    first = aggregate(word, AggregationStrategy.FIRST, LABELS, join)
    maximum = aggregate(word, AggregationStrategy.MAX, LABELS, join)
    average = aggregate(word, AggregationStrategy.AVERAGE, LABELS, join)
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in first] == [("LOC", "amsterdam", 0, 9)]
    assert maximum[0]["entity_group"] == "PER" and maximum[0]["score"] == pytest.approx(0.9)
    averaged = (one_hot("B-LOC", 0.6) + one_hot("B-PER", 0.9)) / 2
    assert average[0]["entity_group"] == "PER"
    assert average[0]["score"] == pytest.approx(averaged.max())


def test_group_entities_joins_words_with_the_tokenizer():
    entities = [
        {"entity": "B-LOC", "score": 0.8, "word": "new", "start": 0, "end": 3},
        {"entity": "I-LOC", "score": 0.6, "word": "york", "start": 4, "end": 8},
    ]
    assert group_entities(entities, join) == [
        {"entity_group": "LOC", "score": pytest.approx(0.7), "word": "new york", "start": 0, "end": 8}
    ]


def test_ignored_labels_are_dropped_from_either_shape():
    entities = [{"entity": "O"}, {"entity_group": "O"}, {"entity_group": "PER"}, {"entity": "B-PER"}]
    assert drop_ignored(entities, ["O"]) == [{"entity_group": "PER"}, {"entity": "B-PER"}]
    assert drop_ignored(entities, []) == entities


def test_merging_windows_keeps_the_longer_then_the_surer_entity():
    entities = [
        {"entity_group": "PER", "score": 0.9, "start": 0, "end": 5},
        {"entity_group": "PER", "score": 0.8, "start": 0, "end": 9},  # longer: wins
        {"entity_group": "LOC", "score": 0.5, "start": 20, "end": 25},
        {"entity_group": "LOC", "score": 0.7, "start": 20, "end": 25},  # same length, surer: wins
        {"entity_group": "ORG", "score": 0.4, "start": 30, "end": 33},
    ]
    assert [(e["start"], e["end"], e["score"]) for e in merge_overlapping(entities)] == [
        (0, 9, 0.8),
        (20, 25, 0.7),
        (30, 33, 0.4),
    ]
    assert merge_overlapping([]) == []
