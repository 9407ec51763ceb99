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
