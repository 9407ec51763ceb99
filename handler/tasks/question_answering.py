"""Extractive question answering: the span of the context that answers the question, with the
4.x transformers pipeline's windowing and scoring (see ``qa_spans``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import AutoModelForQuestionAnswering

from handler.api.errors import RequestError
from handler.api.parameters import ParamSpec
from handler.api.request_parsing import QuestionContext, RequestBody, parse_inputs, parse_question_context
from handler.api.tasks import Task
from handler.api.types import ParsedRequest
from handler.engine.encoder_runner import (
    EncodedInput,
    EncodeResult,
    EncoderRunner,
    Window,
    token_types_of,
    windows_of_inputs,
)
from handler.engine.runner import RunnerSetup
from handler.postprocess.qa_spans import (
    NO_NULL_SCORE,
    Answer,
    candidates_per_window,
    char_span,
    rank_answers,
    select_spans,
)

# The 4.x pipeline's default longest answer, in tokens.
DEFAULT_MAX_ANSWER_LEN = 15


@dataclass(frozen=True)
class AnswerParams:
    top_k: int
    max_answer_len: int
    handle_impossible_answer: bool
    align_to_words: bool
    max_seq_len: int
    doc_stride: int


@dataclass(frozen=True)
class QAWindow:
    """What reading one window's logits back into the context needs."""

    answerable: np.ndarray  # the context tokens and the CLS token
    offsets: Sequence[tuple[int, int]]
    word_ids: Sequence[int | None]
    sequence_ids: Sequence[int | None]


class QuestionAnsweringRunner(EncoderRunner[QuestionContext, AnswerParams, QAWindow]):
    task = Task.QUESTION_ANSWERING
    auto_model_class = AutoModelForQuestionAnswering
    needs_fast_tokenizer = True
    token_level_outputs = True
    output_fields = ("start_logits", "end_logits")

    def compare_probe_outputs(
        self, reference: Sequence[dict[str, np.ndarray]], candidate: Sequence[dict[str, np.ndarray]]
    ) -> tuple[bool, float]:
        """Positions as every encoder's, and the answer itself: each probe text's best span (at the
        pipeline's default max_answer_len, every token answerable) must be the same, and its score
        (a product of two probabilities) and the no-answer score move at most the tolerance."""
        agree, change = super().compare_probe_outputs(reference, candidate)
        for ours, theirs in zip(reference, candidate):
            answerable = np.ones(len(ours["start_logits"]), dtype=bool)
            best = [select_spans(output["start_logits"], output["end_logits"], answerable, 1, DEFAULT_MAX_ANSWER_LEN)
                    for output in (ours, theirs)]  # fmt: skip
            spans = [(spans.spans[0].start, spans.spans[0].end) if spans.spans else None for spans in best]
            scores = [spans.spans[0].score if spans.spans else 0.0 for spans in best]
            agree = agree and spans[0] == spans[1]
            change = max(change, abs(scores[0] - scores[1]), abs(best[0].null_score - best[1].null_score))
        return agree, change

    def __init__(self, setup: RunnerSetup) -> None:
        super().__init__(setup)
        # Right-padding tokenizers put the question first (BERT-style); left-padding ones the context.
        self.question_first = self.tokenizer.padding_side == "right"
        self.context_sequence = 1 if self.question_first else 0
        self.cls_token_id = self.tokenizer.cls_token_id

    def schema(self) -> Mapping[str, ParamSpec]:
        # The 4.x pipeline's defaults; doc_stride's depends on max_seq_len, so it is set in parse().
        return {
            "top_k": ParamSpec("int", default=1, minimum=1, maximum=100),
            "max_answer_len": ParamSpec("int", default=DEFAULT_MAX_ANSWER_LEN, minimum=1, maximum=self.max_length),
            "handle_impossible_answer": ParamSpec("bool", default=False),
            "align_to_words": ParamSpec("bool", default=True),
            "max_seq_len": ParamSpec("int", default=min(self.max_length, 384), minimum=8, maximum=self.max_length),
            "doc_stride": ParamSpec("int", minimum=0, maximum=self.max_length),
            # Accepted as the pipeline accepts it; like the pipeline with a fast tokenizer, it changes nothing.
            "max_question_len": ParamSpec("int", minimum=1, maximum=self.max_length),
        }

    def parse(self, body: RequestBody) -> ParsedRequest[QuestionContext, AnswerParams]:
        if not body.is_json:
            raise RequestError(
                'question answering needs JSON: {"inputs": {"question": "...", "context": "..."}} '
                "with Content-Type: application/json",
                reason="wrong_shape",
            )
        inputs, is_list = parse_inputs(body.inputs, parse_question_context, self.settings.limits.max_inputs_per_request)
        params = self.parameters_for(body)
        max_seq_len = params["max_seq_len"]
        doc_stride = params.get("doc_stride", min(max_seq_len // 2, 128))
        if doc_stride >= max_seq_len:
            raise RequestError(
                f"doc_stride ({doc_stride}) must be smaller than max_seq_len ({max_seq_len})",
                reason="invalid_parameter",
            )
        return ParsedRequest(
            inputs,
            is_list,
            AnswerParams(
                top_k=params["top_k"],
                max_answer_len=params["max_answer_len"],
                handle_impossible_answer=params["handle_impossible_answer"],
                align_to_words=params["align_to_words"],
                max_seq_len=max_seq_len,
                doc_stride=doc_stride,
            ),
        )

    def encode(self, inputs: Sequence[QuestionContext], params: Sequence[AnswerParams]) -> list[EncodeResult]:
        # One tokenizer call per input: windowing depends on each request's max_seq_len and
        # doc_stride, and a question too long for its window must fail only its own request.
        return [self._encode_one(item, item_params) for item, item_params in zip(inputs, params)]

    def _encode_one(self, item: QuestionContext, params: AnswerParams) -> EncodeResult:
        first, second = (item.question, item.context) if self.question_first else (item.context, item.question)
        try:
            encoding = self.tokenizer(
                first,
                second,
                truncation="only_second" if self.question_first else "only_first",
                max_length=params.max_seq_len,
                stride=params.doc_stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
                return_token_type_ids=True,
            )
        except Exception:
            return RequestError(
                f"the question is too long to leave room for the context in max_seq_len={params.max_seq_len} "
                "tokens; shorten the question or raise max_seq_len",
                reason="question_too_long",
            )
        [(rows, cut_off)] = windows_of_inputs(
            encoding["overflow_to_sample_mapping"], 1, self.settings.limits.max_windows_per_input
        )
        windows = []
        for row in rows:
            ids = encoding["input_ids"][row]
            sequence_ids = encoding.sequence_ids(row)
            answerable = np.array([s == self.context_sequence for s in sequence_ids], dtype=bool)
            # The CLS token stays answerable: its score is the "no answer" score.
            answerable |= np.array(ids) == self.cls_token_id
            detail = QAWindow(
                answerable, encoding["offset_mapping"][row], encoding.encodings[row].word_ids, sequence_ids
            )
            windows.append(Window(ids, token_types_of(encoding, row), detail))
        return EncodedInput(windows, truncated=cut_off)

    def postprocess(
        self,
        item: QuestionContext,
        params: AnswerParams,
        encoded: EncodedInput[QAWindow],
        outputs: list[dict[str, np.ndarray]],
    ) -> Any:
        found = []
        min_null_score = NO_NULL_SCORE
        candidates = candidates_per_window(params.top_k, params.align_to_words)
        for window, output in zip(encoded.windows, outputs):
            spans = select_spans(
                output["start_logits"],
                output["end_logits"],
                window.detail.answerable,
                candidates,
                params.max_answer_len,
            )
            min_null_score = min(min_null_score, spans.null_score)
            for span in spans.spans:
                start, end = char_span(
                    span,
                    window.detail.offsets,
                    window.detail.word_ids,
                    window.detail.sequence_ids,
                    self.context_sequence,
                    params.align_to_words,
                )
                found.append((start, end, span.score))
        return rank_answers(found, item.context, params.top_k, params.handle_impossible_answer, min_null_score)

    def render(self, result: list[Answer], params: AnswerParams) -> Any:
        # The 4.x pipeline's shape: one answer is an object, whatever top_k asked for.
        if len(result) == 1:
            return result[0].to_json()
        return [answer.to_json() for answer in result]
