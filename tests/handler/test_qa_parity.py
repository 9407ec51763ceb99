"""Question answering equals transformers 4.x's QuestionAnsweringPipeline, run in its own venv as the
oracle, on long repetitive contexts and every parameter (over HTTP: test_e2e_task_modes)."""

from __future__ import annotations

from qa_cases import LONG_CONTEXT
from support import assert_same_answers, call, load_handler


def test_in_process_answers_equal_the_4x_pipeline(qa_model, qa_reference):
    cases, expected = qa_reference
    handler, context = load_handler(qa_model)
    bodies = [
        (
            "application/json",
            {"inputs": {"question": c["question"], "context": c["context"]}, "parameters": c["parameters"]},
        )
        for c in cases
    ]
    answers = call(handler, context, bodies)
    for case, (status, answer), reference in zip(cases, answers, expected):
        assert status == 200, (case["parameters"], answer)
        assert_same_answers(answer, reference)


def test_the_cases_cover_many_windows_merged_answers_and_the_null_answer(qa_model, qa_reference):
    from transformers import AutoTokenizer

    cases, expected = qa_reference
    tokenizer = AutoTokenizer.from_pretrained(qa_model)
    assert len(tokenizer(LONG_CONTEXT)["input_ids"]) > 2 * 128  # several windows even at max_seq_len 128
    answers = [item for reference in expected for item in (reference if isinstance(reference, list) else [reference])]
    assert any(item["answer"] == "" and item["start"] == item["end"] == 0 for item in answers)
    # A merged answer: its text occurs in the context more than once, and its score came from several spans.
    assert any(case["context"].lower().count(item["answer"].lower()) > 1 for case, reference in zip(cases, expected)
               for item in (reference if isinstance(reference, list) else [reference]) if item["answer"])  # fmt: skip
