"""Sequence classification: single-label (softmax, best label), multi-label (sigmoid, thresholds)
and sentence pairs, answered in the shapes of transformers' text-classification pipeline."""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import AutoModelForSequenceClassification

from handler.api.client_shapes import ResponseFormat
from handler.api.errors import ConfigurationError, RequestError
from handler.api.parameters import ParamSpec
from handler.api.request_parsing import RequestBody, TextInput, parse_inputs, parse_text_or_pair
from handler.api.settings import LongText
from handler.api.tasks import Task
from handler.api.types import ClassScores, ParsedRequest
from handler.engine.encoder_runner import (
    EncodedInput,
    EncodeResult,
    EncoderRunner,
    Window,
    token_types_of,
    was_truncated,
    windows_of_inputs,
)
from handler.engine.runner import RunnerSetup
from handler.postprocess.scoring import (
    Activation,
    LogitCalibration,
    best_label,
    decided_labels,
    default_activation,
    ranked_labels,
    served_scores,
    threshold_vector,
)

logger = logging.getLogger(__name__)

# Multi-label: a label is in the answer when its sigmoid score reaches this, unless configured.
DEFAULT_THRESHOLD = 0.5


def aggregate_windows(window_scores: np.ndarray, long_text: LongText) -> np.ndarray:
    """One score vector from the windows' (windows x labels); the only row when there is one."""
    if long_text is LongText.MAX:
        return window_scores.max(axis=0)
    return window_scores.mean(axis=0)


class AnswerShape(str, enum.Enum):
    # The default: one {"label", "score"} (single-label), or the labels over threshold (multi-label).
    BEST = "best"
    # The best label alone, as an object, whatever the model (return_all_scores: false).
    TOP = "top"
    # Labels sorted by score, at most top_k (top_k given, or the inference API's shape).
    RANKED = "ranked"
    # Every label in index order, unsorted (return_all_scores: true, as the 4.x pipeline had it).
    LABEL_ORDER = "label_order"


@dataclass(frozen=True)
class ClassificationParams:
    shape: AnswerShape
    # With RANKED: how many labels, best first; None for all of them.
    top_k: int | None
    activation: Activation
    thresholds: np.ndarray
    # A single text answered as a one-item list (return_all_scores given, or the inference API).
    wrap_single: bool
    # False (TEI's truncate): a text longer than max_length is refused with a 413, not cut.
    truncate: bool
    # How a text longer than one window is read: cut, or every window scored and aggregated.
    long_text: LongText
    # The names to answer with: the main ones, or a label set's (parameters.label_set).
    labels: tuple[str, ...]


class SequenceClassificationRunner(EncoderRunner[TextInput, ClassificationParams, None]):
    task = Task.SEQUENCE_CLASSIFICATION
    auto_model_class = AutoModelForSequenceClassification
    parameter_schema = {
        "top_k": ParamSpec("int", minimum=1, nullable=True),
        "function_to_apply": ParamSpec("choice", choices=tuple(a.value for a in Activation)),
        "threshold": ParamSpec("float", minimum=0.0, maximum=1.0),
        # Names users bring from neighbouring APIs: the 4.x pipeline's, then TEI's.
        "return_all_scores": ParamSpec("bool"),
        "raw_scores": ParamSpec("bool", default=False),
        "truncate": ParamSpec("bool", default=True),
        "long_text": ParamSpec(
            "choice", default=LongText.TRUNCATE.value, choices=tuple(mode.value for mode in LongText)
        ),
        "label_set": ParamSpec("str", max_item_length=32),
    }

    def __init__(self, setup: RunnerSetup) -> None:
        super().__init__(setup)
        settings, labels = self.settings, self.labels
        classification = settings.classification
        problem_type = getattr(self.config, "problem_type", None)
        self.multi_label = (
            classification.multi_label
            if classification.multi_label is not None
            else problem_type == "multi_label_classification"
        )
        self.activation = Activation.SIGMOID if self.multi_label else default_activation(problem_type, len(labels))
        # A regression head answers its raw output, {"score": x}, as the pipeline's raw score.
        self.regression = problem_type == "regression" and len(labels) == 1
        unknown = sorted(set(classification.label_thresholds) - set(labels))
        if unknown:
            raise ConfigurationError(
                f"handler.label_thresholds names unknown label(s) {unknown}; labels are {list(labels)}"
            )
        if not self.multi_label and (classification.label_thresholds or "threshold" in self.default_parameters):
            raise ConfigurationError(
                "thresholds apply to multi-label models; set handler.multi_label: true "
                "or remove threshold/label_thresholds"
            )
        self.thresholds = threshold_vector(
            labels, self.default_parameters.get("threshold", DEFAULT_THRESHOLD), dict(classification.label_thresholds)
        )
        # Scores are calibrated where training fitted it; logits (function_to_apply none) stay raw.
        self.calibration = LogitCalibration.from_settings(classification.calibration, labels)
        content_length = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        # Overlap of a long document's windows: handler.stride, else a quarter of a window.
        self.document_stride = settings.limits.stride if settings.limits.stride is not None else content_length // 4
        if not 0 <= self.document_stride < content_length:
            raise ConfigurationError(
                f"handler.stride={self.document_stride} must be below the {content_length} text tokens "
                f"that fit in one window of max_length={self.max_length}"
            )

    def parse(self, body: RequestBody) -> ParsedRequest[TextInput, ClassificationParams]:
        inputs, is_list = parse_inputs(body.inputs, parse_text_or_pair, self.settings.limits.max_inputs_per_request)
        params = self.parameters_for(body)
        threshold = params.get("threshold")
        if threshold is not None and not self.multi_label:
            raise RequestError(
                "threshold applies to multi-label models; this model is single-label (use top_k)",
                reason="invalid_parameter",
            )
        function = params.get("function_to_apply")
        if params["raw_scores"]:
            if function not in (None, Activation.NONE.value):
                raise RequestError(
                    f"raw_scores: true asks for logits, but function_to_apply is {function!r}",
                    reason="invalid_parameter",
                )
            function = Activation.NONE.value
        # Only a threshold the request itself sends replaces the per-label ones.
        given_threshold = threshold if isinstance(body.parameters, dict) and "threshold" in body.parameters else None
        shape, top_k, wrap_single = self._shape(params, body.response_format)
        return ParsedRequest(
            inputs,
            is_list,
            ClassificationParams(
                shape=shape,
                top_k=top_k,
                activation=Activation(function) if function is not None else self.activation,
                # A request's threshold applies to every label, overriding per-label settings.
                thresholds=self.thresholds if given_threshold is None else np.full(len(self.labels), given_threshold),
                wrap_single=wrap_single and not is_list,
                truncate=params["truncate"],
                long_text=LongText(params["long_text"]),
                labels=self.labels_named_by(params),
            ),
        )

    @staticmethod
    def _shape(params: dict, response_format: ResponseFormat) -> tuple[AnswerShape, int | None, bool]:
        """(shape, top_k, wrap_single) as the 4.x pipeline derives them, or the inference API's."""
        if "top_k" in params:
            return AnswerShape.RANKED, params["top_k"], response_format is ResponseFormat.INFERENCE_API
        if response_format is ResponseFormat.INFERENCE_API:
            return AnswerShape.RANKED, None, True
        if "return_all_scores" in params:
            shape = AnswerShape.LABEL_ORDER if params["return_all_scores"] else AnswerShape.TOP
            return shape, None, True
        return AnswerShape.BEST, None, False

    def encode(self, inputs: Sequence[TextInput], params: Sequence[ClassificationParams]) -> list[EncodeResult]:
        results: list[EncodeResult] = [RequestError("not encoded")] * len(inputs)
        # Sentence pairs always truncate: which window of a pair would a premise align with?
        documents = [i for i, item in enumerate(inputs) if item.text_pair is None and params[i].long_text.windowed]
        windowed = set(documents)
        singles = [i for i, item in enumerate(inputs) if item.text_pair is None and i not in windowed]
        pairs = [i for i, item in enumerate(inputs) if item.text_pair is not None]
        if documents:
            for position, encoded in zip(documents, self._windows([inputs[i].text for i in documents])):
                results[position] = encoded
        for positions, texts, text_pairs in (
            (singles, [inputs[i].text for i in singles], None),
            (pairs, [inputs[i].text for i in pairs], [inputs[i].text_pair for i in pairs]),
        ):
            if not positions:
                continue
            encoding = self.tokenizer(texts, text_pairs, truncation=True, max_length=self.max_length)
            for row, position in enumerate(positions):
                truncated = was_truncated(encoding, row, self.max_length)
                if truncated and not params[position].truncate:
                    results[position] = RequestError(
                        f"the text is longer than max_length={self.max_length} tokens and truncate is false",
                        status=413,
                        reason="input_too_long",
                    )
                    continue
                window = Window(encoding["input_ids"][row], token_types_of(encoding, row), None)
                results[position] = EncodedInput([window], truncated=truncated)
        return results

    def _windows(self, texts: list[str]) -> list[EncodedInput[None]]:
        """Each text as the windows the tokenizer makes (overlapping by the document stride)."""
        encoding = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            stride=self.document_stride,
            return_overflowing_tokens=True,
        )
        owned = windows_of_inputs(
            encoding["overflow_to_sample_mapping"], len(texts), self.settings.limits.max_windows_per_input
        )
        return [
            EncodedInput(
                [Window(encoding["input_ids"][r], token_types_of(encoding, r), None) for r in rows],
                truncated=cut_off,
                reports_windows=True,
            )
            for rows, cut_off in owned
        ]

    def postprocess(
        self,
        item: TextInput,
        params: ClassificationParams,
        encoded: EncodedInput[None],
        outputs: list[dict[str, np.ndarray]],
    ) -> ClassScores:
        activation, calibration = params.activation, self.calibration
        window_scores = np.stack([served_scores(output["logits"], activation, calibration) for output in outputs])
        scores = aggregate_windows(window_scores, params.long_text)
        return ClassScores(scores, params.labels, decided_labels(scores, self.multi_label, params.thresholds))

    def render(self, result: ClassScores, params: ClassificationParams) -> Any:
        scores, labels = np.asarray(result.scores), result.labels
        answer: Any
        if params.shape is AnswerShape.RANKED:
            answer = ranked_labels(scores, labels, params.top_k)
        elif params.shape is AnswerShape.LABEL_ORDER:
            answer = [{"label": label, "score": float(score)} for label, score in zip(labels, scores)]
        elif params.shape is AnswerShape.BEST and self.regression:
            answer = {"score": float(scores[0])}
        elif params.shape is AnswerShape.BEST and self.multi_label:
            answer = [{"label": labels[i], "score": float(scores[i])} for i in result.decision]
        else:
            answer = best_label(scores, labels)
        return [answer] if params.wrap_single else answer
