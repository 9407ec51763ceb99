"""Small labelled datasets, one per training task, for the training tests."""

from __future__ import annotations

import json

SINGLE = "text,label\n" + "".join(
    f"{text},{label}\n"
    for text, label in [
        ("the food was wonderful", "positive"), ("great staff and a lovely room", "positive"),
        ("I loved every minute", "positive"), ("fantastic value", "positive"),
        ("the soup was cold", "negative"), ("rude staff and a dirty room", "negative"),
        ("a waste of money", "negative"), ("it broke after a day", "negative"),
        ("the shop opens at nine", "neutral"), ("the train leaves at noon", "neutral"),
        ("it has four wheels", "neutral"), ("the box is blue", "neutral"),
    ]
)  # fmt: skip
PAIRS = "text,text_pair,label\n" + "".join(
    f"{a},{b},{label}\n"
    for a, b, label in [
        ("a man plays guitar", "someone makes music", "entailment"), ("a dog runs", "an animal moves", "entailment"),
        ("the sun is up", "it is daytime", "entailment"), ("she reads a book", "she is reading", "entailment"),
        ("a man plays guitar", "nobody plays anything", "contradiction"),
        ("a dog runs", "the dog sleeps", "contradiction"),
        ("the sun is up", "it is midnight", "contradiction"), ("she reads a book", "she is asleep", "contradiction"),
    ]
)  # fmt: skip
MULTI = "\n".join(
    json.dumps({"text": text, "labels": labels})
    for text, labels in [
        ("charged twice for one order", ["billing"]), ("the app crashes when I pay", ["billing", "bug"]),
        ("please add dark mode", ["feature_request"]), ("love it, but add export", ["praise", "feature_request"]),
        ("refund still missing", ["billing"]), ("screen freezes on start", ["bug"]),
        ("great app", ["praise"]), ("wonderful support team", ["praise"]),
        ("crash after update", ["bug"]), ("invoice shows the wrong amount", ["billing"]),
        ("could you add a widget", ["feature_request"]), ("nice design, crashes though", ["praise", "bug"]),
    ]
) + "\n"  # fmt: skip
TOKENS = "\n".join(
    json.dumps({"tokens": tokens.split(), "tags": tags.split()})
    for tokens, tags in [
        ("Alice lives in Paris", "B-PER O O B-LOC"), ("Bob Stone visited Berlin", "B-PER I-PER O B-LOC"),
        ("Marie works in London", "B-PER O O B-LOC"), ("The weather in Paris is grey", "O O O B-LOC O O"),
        ("Alice Johnson met Bob", "B-PER I-PER O B-PER"), ("They flew to Amsterdam", "O O O B-LOC"),
        ("London is rainy", "B-LOC O O"), ("Marie Curie won prizes", "B-PER I-PER O O"),
    ]
) + "\n"  # fmt: skip


def keyword_sentiment(count: int, seed: int = 0) -> str:
    """``count`` seeded sentences of filler words around one keyword that decides the label
    (learnable by a tiny encoder in a few epochs; a real signal for the recipe's tests)."""
    import random

    rng = random.Random(seed)
    # Words of the tiny tokenizer's vocabulary (tests/tiny_models.py CORPUS): one token each.
    keywords = {"positive": ("wonderful", "fantastic", "friendly"), "negative": ("cold", "hated", "bland"),
                "neutral": ("tuesday", "paris", "meeting")}  # fmt: skip
    filler = ("the", "service", "staff", "food", "train", "package", "arrived", "and", "was", "it", "on", "in")
    rows = []
    for _ in range(count):
        label = rng.choice(sorted(keywords))
        words = [rng.choice(filler) for _ in range(rng.randint(2, 12))]
        words.insert(rng.randint(0, len(words)), rng.choice(keywords[label]))
        rows.append(f"{' '.join(words)},{label}\n")
    return "text,label\n" + "".join(rows)


def keyword_scores(count: int, seed: int = 0) -> str:
    """Regression: ``score`` = (positive keywords) - (negative keywords) in a sentence, -3..3."""
    import random

    rng = random.Random(seed)
    filler = ("the", "service", "staff", "food", "train", "package", "arrived", "and", "was", "it")
    rows = []
    for _ in range(count):
        good, bad = rng.randint(0, 3), rng.randint(0, 3)
        words = [rng.choice(filler) for _ in range(rng.randint(2, 8))] + ["wonderful"] * good + ["cold"] * bad
        rng.shuffle(words)
        rows.append(f"{' '.join(words)},{good - bad}\n")
    return "text,score\n" + "".join(rows)
