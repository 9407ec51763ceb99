"""Question-answering cases for the parity tests against the 4.x pipeline, and the oracle runner:
long, repetitive contexts (the same words in many windows, so answers merge across windows) under
every parameter the mode accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ORACLE_PYTHON = REPO / ".venv-qa-oracle" / "bin" / "python"

_SENTENCES = [
    "Marie Curie won the Nobel Prize in Physics and Chemistry.",
    "The package arrived on Tuesday in Paris.",
    "Alice Johnson works for Acme Corporation in Berlin.",
    "Our train to Amsterdam was delayed by two hours.",
    "The weather in London is rainy and grey today.",
    "Where was the treaty signed? It was signed in Versailles in 1919.",
]
# About 300 words: every sentence six times over, in a fixed interleaving.
LONG_CONTEXT = " ".join(_SENTENCES[(i * 5) % len(_SENTENCES)] for i in range(36))
MEDIUM_CONTEXT = " ".join(_SENTENCES * 2)
SHORT_CONTEXT = "Marie Curie won the Nobel Prize."

QUESTIONS = ["Who won the Nobel Prize?", "Where was the treaty signed?"]

PARAMETER_SETS: list[dict[str, Any]] = [
    {},
    {"top_k": 3, "doc_stride": 32, "max_seq_len": 64},
    {"top_k": 5, "max_answer_len": 5},
    {"top_k": 3, "handle_impossible_answer": True},
    {"top_k": 2, "align_to_words": False},
    {"align_to_words": False},
    {"top_k": 10, "max_seq_len": 48, "doc_stride": 16},
    {"top_k": 4, "max_answer_len": 1, "doc_stride": 8, "max_seq_len": 40},
    {"top_k": 2, "handle_impossible_answer": True, "align_to_words": False, "max_seq_len": 64, "doc_stride": 20},
    {"max_question_len": 8, "top_k": 2},
]


def cases() -> list[dict[str, Any]]:
    found = []
    for context in (LONG_CONTEXT, MEDIUM_CONTEXT):
        for question in QUESTIONS:
            for parameters in PARAMETER_SETS:
                found.append({"question": question, "context": context, "parameters": parameters})
    # One window with fewer scoring spans than the pipeline keeps per window.
    for parameters in ({"top_k": 20}, {"top_k": 20, "handle_impossible_answer": True}, {"top_k": 6}):
        found.append({"question": QUESTIONS[0], "context": SHORT_CONTEXT, "parameters": parameters})
    return found


def oracle_answers(
    model_dir: Path,
    job_cases: list[dict[str, Any]],
    scratch: Path,
    task: str = "question-answering",
    id2label: dict[int, str] | None = None,
) -> list[Any]:
    """What transformers 4.x's own pipeline answers (tests/pipeline_oracle.py), in its own venv."""
    assert ORACLE_PYTHON.exists(), "the 4.x oracle venv is missing: run `make qa-oracle` (make test does)"
    job, answers = scratch / f"{task}-job.json", scratch / f"{task}-answers.json"
    document = {"task": task, "model_dir": str(model_dir), "cases": job_cases, "id2label": id2label}
    job.write_text(json.dumps(document), encoding="utf-8")
    subprocess.run([str(ORACLE_PYTHON), str(REPO / "tests" / "pipeline_oracle.py"), str(job), str(answers)],
                   check=True, capture_output=True, text=True, timeout=600)  # fmt: skip
    document = json.loads(answers.read_text(encoding="utf-8"))
    assert document["transformers"].startswith("4.")
    return document["answers"]


def softmax(values: np.ndarray) -> np.ndarray:
    exp = np.exp(values - values.max())
    return exp / exp.sum()


def brute_force_best(model_dir, question, context, max_answer_len=15):
    """Every (i, j) scored by hand with the pipeline's rules, for a context that fits one window."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    encoding = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoding.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        output = model(**encoding)
    sequence_ids = encoding.sequence_ids(0)
    allowed = np.array([s == 1 or i == 0 for i, s in enumerate(sequence_ids)])
    start = softmax(np.where(allowed, output.start_logits[0].numpy(), -10000.0))
    end = softmax(np.where(allowed, output.end_logits[0].numpy(), -10000.0))
    best = (-1.0, 0, 0)
    for i in range(1, len(allowed)):
        for j in range(i, min(i + max_answer_len, len(allowed))):
            if allowed[i] and allowed[j] and start[i] * end[j] > best[0]:
                best = (float(start[i] * end[j]), offsets[i][0], offsets[j][1])
    return best
