"""``/explanations/NAME``: per-token attributions with Captum's LayerIntegratedGradients.

Attributions are taken at the model's input embeddings (``model.get_input_embeddings()``, which
every transformers architecture provides), against a baseline that replaces every non-special
token by the padding token. The explained quantity is the served score of the target label
(softmax or sigmoid, as the predictions use), so the attributions add up to
``score(input) - score(baseline)`` up to the reported convergence ``delta``.

- sequence classification: target = the predicted label, or ``parameters.target`` (a label name);
- token classification: target = ``parameters.token_index`` (a position as ``index`` reports it
  with aggregation ``none``) and its predicted label, or ``parameters.target``.
Special tokens carry no attribution (they equal the baseline) and are left out of the answer.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from handler.api.errors import ConfigurationError, RequestError
from handler.api.parameters import ParamSpec, request_parameters
from handler.api.request_parsing import RequestBody, TextInput, parse_inputs, parse_text, parse_text_or_pair
from handler.api.settings import MAX_EXPLAIN_STEPS, Backend, Quantization
from handler.api.streaming import StreamSink
from handler.api.tasks import Task
from handler.api.types import BatchResult, ParsedRequest, RequestOutcome
from handler.engine.encoder_runner import EncoderRunner
from handler.engine.runner import TaskRunner
from handler.postprocess.scoring import Activation
from handler.postprocess.top_label import TIE_MARGIN
from handler.tasks.sequence_classification import SequenceClassificationRunner

EXPLAINABLE = (Task.SEQUENCE_CLASSIFICATION, Task.TOKEN_CLASSIFICATION)
# The served activations, in torch: attributions need gradients through them.
TORCH_ACTIVATIONS: dict[Activation, Callable[[torch.Tensor], torch.Tensor]] = {
    Activation.SOFTMAX: lambda logits: torch.softmax(logits, dim=-1),
    Activation.SIGMOID: torch.sigmoid,
    Activation.NONE: lambda logits: logits,
}


@dataclass(frozen=True)
class ExplainParams:
    target: str | None
    token_index: int | None
    n_steps: int
    # The names to answer with: the main ones, or a label set's (parameters.label_set).
    labels: tuple[str, ...]


class Explainer:
    """Parses explanation requests and answers them, one attribution run per input."""

    def __init__(self, runner: TaskRunner, n_steps: int) -> None:
        if runner.task not in EXPLAINABLE or not isinstance(runner, EncoderRunner):
            raise ConfigurationError(f"explanations are not available for {runner.task.value}")
        if runner.settings.loading.quantization is not Quantization.NONE:
            raise ConfigurationError("explanations need gradients, which int8-quantized models do not have")
        if runner.settings.loading.backend is not Backend.TORCH:
            raise ConfigurationError("explanations need gradients, which the openvino backend does not give")
        if importlib.util.find_spec("captum") is None:
            raise ConfigurationError("explanations need captum installed where torchserve runs")
        self.runner = runner
        self.per_token = runner.task is Task.TOKEN_CLASSIFICATION
        self.default_steps = n_steps
        # Built at the first explanation: importing captum (and matplotlib with it) costs 0.6 s of
        # CPU, paid by every worker at load while the other models load beside it.
        self._integrated_gradients: Any = None
        # Token classification serves softmax scores of raw logits; sequence classification its own
        # activation, of calibrated logits where the model carries a calibration (logits stay raw).
        activation, calibration = Activation.SOFTMAX, None
        if isinstance(runner, SequenceClassificationRunner):
            activation, calibration = runner.activation, runner.calibration
        self.activation = TORCH_ACTIVATIONS[activation]
        self.calibration = (
            None
            if calibration is None or activation is Activation.NONE
            else tuple(
                torch.tensor(vector, dtype=torch.float32, device=runner.device)
                for vector in (calibration.adjustment, calibration.temperature)
            )
        )
        top_label = calibration.top_label if calibration is not None and activation is Activation.SOFTMAX else None
        self.top_label = (
            None
            if top_label is None
            else tuple(torch.tensor(knots, dtype=torch.float32, device=runner.device)
                       for knots in (top_label.confidence, top_label.accuracy))
        )  # fmt: skip
        self.schema: Mapping[str, ParamSpec] = {
            "target": ParamSpec("str", max_item_length=256),
            "n_steps": ParamSpec("int", minimum=1, maximum=MAX_EXPLAIN_STEPS),
            "label_set": ParamSpec("str", max_item_length=32),
            **({"token_index": ParamSpec("int", minimum=0)} if self.per_token else {}),
        }

    def parse(self, body: RequestBody) -> ParsedRequest[Any, ExplainParams]:
        parse_one = parse_text if self.per_token else parse_text_or_pair
        inputs, is_list = parse_inputs(body.inputs, parse_one, self.runner.settings.limits.max_inputs_per_request)
        given = request_parameters(body.parameters, self.schema)
        if self.per_token and "token_index" not in given:
            raise RequestError(
                "token classification explanations need parameters.token_index (a token position, "
                'as "index" in answers with aggregation_strategy "none")',
                reason="invalid_parameter",
            )
        labels = self.runner.labels_named_by(given)
        target = given.get("target")
        if target is not None and target not in labels:
            raise RequestError(
                "parameters.target must be one of " + ", ".join(repr(label) for label in labels) + f", got {target!r}",
                reason="invalid_parameter",
            )
        params = ExplainParams(target, given.get("token_index"), given.get("n_steps", self.default_steps), labels)
        return ParsedRequest(inputs, is_list, params)

    def run(
        self, requests: Sequence[ParsedRequest[Any, ExplainParams]], sinks: Sequence[StreamSink | None] | None = None
    ) -> BatchResult:
        outcomes = []
        for request in requests:
            try:
                results = [self._explain(item, request.params) for item in request.inputs]
            except RequestError as error:
                outcomes.append(RequestOutcome.failed(error))
                continue
            outcomes.append(RequestOutcome.answered(request, results, dict))
        return BatchResult(outcomes)

    # ---- one input ------------------------------------------------------------------------

    def integrated_gradients(self) -> Any:
        if self._integrated_gradients is None:
            from captum.attr import LayerIntegratedGradients

            embeddings = self.runner.model.get_input_embeddings()
            self._integrated_gradients = LayerIntegratedGradients(self._score, embeddings)
        return self._integrated_gradients

    def _score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None,
               position: int | None) -> torch.Tensor:  # fmt: skip
        """The served scores (every label) of each row; one token's when ``position`` is set."""
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            feed["token_type_ids"] = token_type_ids
        logits = self.runner.model(**feed).logits.float()  # scores in float32, as the predictions
        if position is not None:
            logits = logits[:, position, :]
        if self.calibration is not None:
            adjustment, temperature = self.calibration
            logits = (logits - adjustment) / temperature
        scores = self.activation(logits)
        if self.top_label is not None:
            scores = mapped_top_label(scores, *self.top_label)
        return scores

    def _explain(self, item: TextInput | str, params: ExplainParams) -> dict[str, Any]:
        runner = self.runner
        text, pair = (item, None) if isinstance(item, str) else (item.text, item.text_pair)
        encoding = runner.tokenizer(
            text, pair, truncation=True, max_length=runner.max_length, return_offsets_mapping=True,
            return_special_tokens_mask=True, return_tensors="pt",
        )  # fmt: skip
        device = runner.device
        input_ids = encoding["input_ids"].to(device)
        special = encoding["special_tokens_mask"][0].bool()
        baseline = torch.where(special.to(device), input_ids, torch.full_like(input_ids, runner.pad_id))
        mask = encoding["attention_mask"].to(device)
        types = (
            encoding["token_type_ids"].to(device) if runner.feeds_token_types and "token_type_ids" in encoding else None
        )
        position = params.token_index if self.per_token else None
        if position is not None and position >= input_ids.shape[1]:
            raise RequestError(
                f"token_index {position} is past the last token ({input_ids.shape[1] - 1})", reason="invalid_parameter"
            )
        policy = runner.policy
        with policy.forward_context():
            scores = self._score(input_ids, mask, types, position)[0]
        target = params.labels.index(params.target) if params.target is not None else int(scores.argmax())
        with policy.forward_context(gradients=True):
            attributions, delta = self.integrated_gradients().attribute(
                inputs=input_ids,
                baselines=baseline,
                additional_forward_args=(mask, types, position),
                target=target,
                n_steps=params.n_steps,
                internal_batch_size=params.n_steps,
                return_convergence_delta=True,
            )
        per_token = policy.to_numpy(attributions.sum(dim=-1)[0])
        keep = [i for i in range(input_ids.shape[1]) if not special[i]]
        offsets = encoding["offset_mapping"][0].tolist()
        tokens = runner.tokenizer.convert_ids_to_tokens(encoding["input_ids"][0].tolist())
        answer: dict[str, Any] = {
            "target": params.labels[target],
            "target_score": float(scores[target]),
            "tokens": [tokens[i] for i in keep],
            "offsets": [offsets[i] for i in keep],
            "attributions": [float(per_token[i]) for i in keep],
            "delta": float(delta.reshape(-1)[0]),
        }
        if position is not None:
            answer["token_index"] = position
        return answer


def mapped_top_label(scores: torch.Tensor, confidence: torch.Tensor, accuracy: torch.Tensor) -> torch.Tensor:
    """handler.postprocess.top_label.TopLabelMap.apply in torch, differentiable where the map is, so
    what is explained is the served score."""
    top = scores.argmax(dim=-1, keepdim=True)
    top_score = scores.gather(-1, top)
    rest = 1.0 - top_score
    runner_up = scores.scatter(-1, top, float("-inf")).max(dim=-1, keepdim=True).values
    # np.interp: linear between knots (strictly increasing confidence), flat beyond the ends.
    right = torch.searchsorted(confidence, top_score.detach().contiguous()).clamp(1, len(confidence) - 1)
    x0, x1, y0, y1 = confidence[right - 1], confidence[right], accuracy[right - 1], accuracy[right]
    share = ((top_score - x0) / (x1 - x0)).clamp(0.0, 1.0)
    floor = runner_up / (rest + runner_up).clamp_min(1e-30) * (1.0 + TIE_MARGIN)
    mapped = torch.maximum(y0 + share * (y1 - y0), floor)
    scaled = scores * (1.0 - mapped) / rest.clamp_min(1e-30)
    mapped_scores = scaled.scatter(-1, top, mapped)
    return torch.where(rest > 0, mapped_scores, scores)
