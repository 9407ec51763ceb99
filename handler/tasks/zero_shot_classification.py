"""Zero-shot classification: an NLI model scores labels the request names, answered like
transformers' ``ZeroShotClassificationPipeline`` (``{"sequence", "labels", "scores"}``).

Every (text, "This example is {label}.") pair of a TorchServe batch is a window of the shared
encoder machinery, so ten labels for one text are ten rows of the batch's (packed or sorted)
passes, not ten calls. Scores follow the pipeline's arithmetic exactly: a softmax of the
entailment logits over the candidates, or, with ``multi_label`` (or one label), per label a
softmax over its contradiction and entailment logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import AutoModelForSequenceClassification

from handler.api.client_shapes import ResponseFormat
from handler.api.errors import ConfigurationError, RequestError
from handler.api.parameters import ParamSpec
from handler.api.request_parsing import RequestBody, parse_inputs, parse_text
from handler.api.tasks import Task
from handler.api.types import ClassScores, ParsedRequest
from handler.engine.encoder_runner import (
    EncodedInput,
    EncodeResult,
    EncoderRunner,
    Window,
    token_types_of,
    was_truncated,
)
from handler.engine.runner import RunnerSetup
from handler.postprocess.scoring import LogitCalibration, zero_shot_scores

DEFAULT_TEMPLATE = "This example is {}."


@dataclass(frozen=True)
class ZeroShotParams:
    candidate_labels: tuple[str, ...]
    hypothesis_template: str
    multi_label: bool
    # The inference API's shape: [{"label", "score"}, ...] instead of {"sequence", "labels", "scores"}.
    label_list: bool


def check_candidate_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    """What the schema cannot say: at least one label, none empty, none twice."""
    if not labels or any(not label.strip() for label in labels):
        raise RequestError("parameters.candidate_labels must name at least one label, none empty",
                           reason="invalid_parameter")  # fmt: skip
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise RequestError(f"parameters.candidate_labels repeats {duplicates}", reason="invalid_parameter")
    return labels


def check_template(template: str) -> str:
    try:
        filled = template.format("label")
    except (IndexError, KeyError, ValueError):
        filled = template
    if filled == template or template.count("{}") != 1:
        raise RequestError(
            f"parameters.hypothesis_template {template!r} must hold exactly one {{}} where the label goes",
            reason="invalid_parameter",
        )
    return template


@dataclass(frozen=True)
class ZeroShotScores(ClassScores):
    """Classification over the request's candidate labels, with the text it answers (the
    pipeline's answer repeats it)."""

    sequence: str = ""


class ZeroShotClassificationRunner(EncoderRunner[str, ZeroShotParams, None]):
    task = Task.ZERO_SHOT_CLASSIFICATION
    auto_model_class = AutoModelForSequenceClassification

    def __init__(self, setup: RunnerSetup) -> None:
        super().__init__(setup)
        entailment = [i for i, name in enumerate(self.labels) if name.lower().startswith("entail")]
        if not entailment:
            raise ConfigurationError(
                f"zero-shot classification needs an NLI model with an entailment label (a name starting "
                f"with 'entail'); this model's labels are {list(self.labels)}"
            )
        self.entailment_id = entailment[0]
        configured = self.default_parameters.get("candidate_labels")
        if configured is not None:
            try:
                check_candidate_labels(configured)
            except RequestError as error:
                raise ConfigurationError(f"model-config.yaml: handler.{error.message}") from None
        # An NLI head trained with a calibration: the pairs' logits are calibrated before scoring.
        self.calibration = LogitCalibration.from_settings(self.settings.classification.calibration, self.labels)
        if self.calibration.top_label is not None:
            raise ConfigurationError("handler.classification.calibration.top_label does not apply to zero-shot scores")

    def schema(self) -> Mapping[str, ParamSpec]:
        limit = self.settings.zero_shot.max_candidate_labels
        return {
            "candidate_labels": ParamSpec("str_list", max_items=limit, comma_separated=True),
            "hypothesis_template": ParamSpec("str", default=DEFAULT_TEMPLATE, max_item_length=1024),
            "multi_label": ParamSpec("bool", default=False),
        }

    def parse(self, body: RequestBody) -> ParsedRequest[str, ZeroShotParams]:
        inputs, is_list = parse_inputs(body.inputs, parse_text, self.settings.limits.max_inputs_per_request)
        params = self.parameters_for(body)
        if "candidate_labels" not in params:
            raise RequestError(
                "zero-shot classification needs parameters.candidate_labels (or handler.parameters.candidate_labels)",
                reason="invalid_parameter",
            )
        return ParsedRequest(
            inputs,
            is_list,
            ZeroShotParams(
                candidate_labels=check_candidate_labels(tuple(params["candidate_labels"])),
                hypothesis_template=check_template(params["hypothesis_template"]),
                multi_label=params["multi_label"],
                label_list=body.response_format is ResponseFormat.INFERENCE_API,
            ),
        )

    def encode(self, inputs: Sequence[str], params: Sequence[ZeroShotParams]) -> list[EncodeResult]:
        """One window per (text, hypothesis) pair, the text truncated first, as the pipeline does."""
        premises = [text for text, item in zip(inputs, params) for _ in item.candidate_labels]
        hypotheses = [item.hypothesis_template.format(label) for item in params for label in item.candidate_labels]
        encoding = self.tokenizer(premises, hypotheses, truncation="only_first", max_length=self.max_length)
        results: list[EncodeResult] = []
        row = 0
        for item in params:
            rows = range(row, row + len(item.candidate_labels))
            windows = [Window(encoding["input_ids"][r], token_types_of(encoding, r), None) for r in rows]
            truncated = any(was_truncated(encoding, r, self.max_length) for r in rows)
            results.append(EncodedInput(windows, truncated=truncated))
            row += len(item.candidate_labels)
        return results

    def postprocess(
        self, item: str, params: ZeroShotParams, encoded: EncodedInput[None], outputs: list[dict[str, np.ndarray]]
    ) -> ClassScores:
        logits = self.calibration.apply(np.stack([output["logits"] for output in outputs]))
        scores = zero_shot_scores(logits, self.entailment_id, params.multi_label)
        # Best first, as the pipeline orders them (its reversed argsort: the later label on a tie).
        order = tuple(int(i) for i in reversed(scores.argsort()))
        return ZeroShotScores(scores, params.candidate_labels, order, sequence=item)

    def render(self, result: ZeroShotScores, params: ZeroShotParams) -> Any:
        labels = [result.labels[i] for i in result.decision]
        ranked = np.asarray(result.scores)[list(result.decision)].tolist()
        if params.label_list:
            return [{"label": label, "score": score} for label, score in zip(labels, ranked)]
        return {"sequence": result.sequence, "labels": labels, "scores": ranked}
