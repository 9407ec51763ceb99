"""Sequence classification: single-label (softmax, best label), multi-label (sigmoid, thresholds)
and sentence pairs, answered in the shapes of transformers' text-classification pipeline."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
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
from handler.postprocess.conformal import prediction_set
from handler.postprocess.scoring import (
    Activation,
    LogitCalibration,
    best_label,
    compare_served_scores,
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
    # parameters.coverage: the conformal threshold of that level (per label: class_conditional).
    set_threshold: float | np.ndarray | None = None
    # parameters.abstain: answers whose top score is below this say "abstained": true.
    abstain_below: float | None = None


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
        # A prediction set holding the true label with this probability (handler.conformal).
        "coverage": ParamSpec("float", minimum=0.0, exclusive_minimum=True, maximum=1.0, nullable=True),
        # Mark answers below the fitted abstention threshold (handler.abstention).
        "abstain": ParamSpec("bool", default=False),
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
        if self.calibration.top_label is not None and (self.multi_label or self.regression):
            raise ConfigurationError("handler.classification.calibration.top_label applies to single-label models")
        content_length = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        self.conformal = settings.conformal
        self.set_thresholds = self._conformal_thresholds()
        self.abstention = settings.abstention
        if self.default_parameters["abstain"] and self.abstention is None:
            raise ConfigurationError(
                "handler.parameters.abstain is true but the model has no handler.abstention threshold; "
                "fit one with hflabels calibrate MODEL_DIR --data FILE --abstain-error E"
            )
        if self.abstention is not None and (self.multi_label or self.regression):
            raise ConfigurationError("handler.abstention applies to single-label classification models")
        # Overlap of a long document's windows: handler.stride, else a quarter of a window.
        self.document_stride = settings.limits.stride if settings.limits.stride is not None else content_length // 4
        if not 0 <= self.document_stride < content_length:
            raise ConfigurationError(
                f"handler.stride={self.document_stride} must be below the {content_length} text tokens "
                f"that fit in one window of max_length={self.max_length}"
            )

    def compare_probe_outputs(
        self, reference: Sequence[dict[str, np.ndarray]], candidate: Sequence[dict[str, np.ndarray]]
    ) -> tuple[bool, float]:
        """The scores as served (activation and calibration), not the raw probabilities."""
        logits = [[output["logits"] for output in outputs] for outputs in (reference, candidate)]
        return compare_served_scores(*logits, self.activation, self.calibration, self.multi_label, self.thresholds)

    def _conformal_thresholds(self) -> dict[float, float | np.ndarray]:
        """Per fitted coverage level, the threshold the sets use; ConfigurationError when the
        method does not fit the model or names labels it does not have."""
        conformal = self.conformal
        if conformal is None:
            return {}
        if self.regression:
            raise ConfigurationError("handler.conformal applies to classification models, not regression")
        if conformal.method.multi_label != self.multi_label:
            kind = "multi-label" if self.multi_label else "single-label"
            wanted = "fnr_control" if self.multi_label else "lac, aps or class_conditional"
            raise ConfigurationError(
                f"handler.conformal.method {conformal.method.value!r} does not apply to this {kind} model "
                f"(use {wanted})"
            )
        thresholds: dict[float, float | np.ndarray] = {}
        for level, threshold in conformal.thresholds.items():
            if isinstance(threshold, Mapping):
                names = set(threshold)
                if names != set(self.labels):
                    raise ConfigurationError(
                        f"handler.conformal.thresholds.{level:g} must give every label a threshold: "
                        f"unknown {sorted(names - set(self.labels))}, missing {sorted(set(self.labels) - names)}"
                    )
                thresholds[level] = np.array([threshold[label] for label in self.labels], dtype=np.float64)
            else:
                thresholds[level] = float(threshold)
        return thresholds

    def _guarantee_params(self, params: dict, activation: Activation) -> dict[str, Any]:
        """set_threshold and abstain_below from parameters.coverage and parameters.abstain (400s
        naming what was fitted, or how to fit it)."""
        found: dict[str, Any] = {}
        coverage, abstain = params.get("coverage"), params["abstain"]
        if (coverage is not None or abstain) and activation is not self.activation:
            raise RequestError(
                "coverage and abstain use the model's calibrated scores; drop raw_scores / function_to_apply",
                reason="invalid_parameter",
            )
        if coverage is not None:
            if self.conformal is None:
                raise RequestError(
                    "coverage: this model has no prediction-set thresholds (handler.conformal); fit them with "
                    "hflabels calibrate MODEL_DIR --data FILE, or train it with hflabels train",
                    reason="invalid_parameter",
                )
            threshold = next((t for level, t in self.set_thresholds.items() if abs(level - coverage) < 1e-9), None)
            if threshold is None:
                fitted = ", ".join(f"{level:g}" for level in self.conformal.levels())
                raise RequestError(
                    f"coverage {coverage:g} was not fitted for this model; fitted levels: {fitted}",
                    reason="invalid_parameter",
                )
            found["set_threshold"] = threshold
        if abstain:
            if self.abstention is None:
                why = (
                    "applies to single-label models"
                    if self.multi_label or self.regression
                    else "needs a fitted threshold (handler.abstention); fit one with "
                    "hflabels calibrate MODEL_DIR --data FILE --abstain-error E"
                )
                raise RequestError(f"abstain {why}", reason="invalid_parameter")
            found["abstain_below"] = self.abstention.threshold
        return found

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
        activation = Activation(function) if function is not None else self.activation
        return ParsedRequest(
            inputs,
            is_list,
            ClassificationParams(
                shape=shape,
                top_k=top_k,
                activation=activation,
                # A request's threshold applies to every label, overriding per-label settings.
                thresholds=self.thresholds if given_threshold is None else np.full(len(self.labels), given_threshold),
                wrap_single=wrap_single and not is_list,
                truncate=params["truncate"],
                long_text=LongText(params["long_text"]),
                labels=self.labels_named_by(params),
                **self._guarantee_params(params, activation),
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
        chosen = None
        if params.set_threshold is not None:
            assert self.conformal is not None
            chosen = prediction_set(self.conformal.method, scores, params.set_threshold)
        # The score as answered (a float in the JSON) against the threshold: the two always agree.
        abstained = None if params.abstain_below is None else bool(float(scores.max()) < params.abstain_below)
        decision = decided_labels(scores, self.multi_label, params.thresholds)
        representation = None
        if "representation" in outputs[0]:
            representation = np.mean([output["representation"] for output in outputs], axis=0)
        return ClassScores(scores, params.labels, decision, prediction_set=chosen, abstained=abstained,
                           probabilities=activation is not Activation.NONE, representation=representation)  # fmt: skip

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
        answer = with_guarantees(answer, result)
        return [answer] if params.wrap_single else answer


def with_guarantees(answer: Any, result: ClassScores) -> Any:
    """The answer with its prediction set and abstention, where asked for: keys of a one-label
    answer ({"label", "score", "prediction_set", "abstained"}); a list of labels (top_k,
    return_all_scores, multi-label) becomes {"labels": [...], "prediction_set", "abstained"}."""
    extra: dict[str, Any] = {}
    if result.prediction_set is not None:
        extra["prediction_set"] = [result.labels[i] for i in result.prediction_set]
    if result.abstained is not None:
        extra["abstained"] = result.abstained
    if not extra:
        return answer
    if isinstance(answer, dict):
        return {**answer, **extra}
    return {"labels": answer, **extra}
