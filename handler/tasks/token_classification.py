"""Token classification (NER, POS): per-token labels or aggregated entities with character
offsets, over overlapping windows so a long text is read to its end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import AutoModelForTokenClassification

from handler.api.errors import ConfigurationError, RequestError
from handler.api.parameters import ParamSpec
from handler.api.request_parsing import RequestBody, parse_inputs, parse_text
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
from handler.postprocess.scoring import softmax
from handler.postprocess.token_aggregation import (
    AggregationStrategy,
    Entity,
    WindowTokens,
    aggregate,
    drop_ignored,
    gather_predictions,
    merge_overlapping,
    to_json,
)


@dataclass(frozen=True)
class TokenParams:
    aggregation_strategy: AggregationStrategy
    ignore_labels: tuple[str, ...]
    # Tokens of overlap between the windows of a long text.
    stride: int
    # The tag names to answer with: the main ones, or a label set's (parameters.label_set).
    labels: tuple[str, ...]


class TokenClassificationRunner(EncoderRunner[str, TokenParams, WindowTokens]):
    task = Task.TOKEN_CLASSIFICATION
    auto_model_class = AutoModelForTokenClassification
    needs_fast_tokenizer = True
    token_level_outputs = True
    parameter_schema = {
        "aggregation_strategy": ParamSpec(
            "choice", default=AggregationStrategy.SIMPLE.value, choices=tuple(s.value for s in AggregationStrategy)
        ),
        "ignore_labels": ParamSpec("str_list", default=("O",), max_items=1024),
        "stride": ParamSpec("int", minimum=0),
        "label_set": ParamSpec("str", max_item_length=32),
    }

    def __init__(self, setup: RunnerSetup) -> None:
        super().__init__(setup)
        self.content_length = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        self.stride = (
            self.settings.limits.stride if self.settings.limits.stride is not None else self.content_length // 4
        )
        if not 0 <= self.stride < self.content_length:
            raise ConfigurationError(
                f"handler.stride={self.stride} must be below the {self.content_length} text tokens "
                f"that fit in one window of max_length={self.max_length}"
            )
        backend_model = getattr(getattr(self.tokenizer, "_tokenizer", None), "model", None)
        self.uses_subword_prefix = bool(getattr(backend_model, "continuing_subword_prefix", None))
        self.unk_token_id = self.tokenizer.unk_token_id

    def parse(self, body: RequestBody) -> ParsedRequest[str, TokenParams]:
        inputs, is_list = parse_inputs(body.inputs, parse_text, self.settings.limits.max_inputs_per_request)
        params = self.parameters_for(body)
        stride = params.get("stride", self.stride)
        if stride >= self.content_length:
            raise RequestError(
                f"parameters.stride={stride} must be below the {self.content_length} text tokens "
                f"that fit in one window of max_length={self.max_length}",
                reason="invalid_parameter",
            )
        strategy = AggregationStrategy(params["aggregation_strategy"])
        labels = self.labels_named_by(params)
        return ParsedRequest(inputs, is_list, TokenParams(strategy, tuple(params["ignore_labels"]), stride, labels))

    def encode(self, inputs: Sequence[str], params: Sequence[TokenParams]) -> list[EncodeResult]:
        """Windows of each text; one tokenizer call per stride in the batch."""
        results: list[EncodeResult] = [RequestError("not encoded")] * len(inputs)
        by_stride: dict[int, list[int]] = {}
        for position, item_params in enumerate(params):
            by_stride.setdefault(item_params.stride, []).append(position)
        for stride, positions in by_stride.items():
            for position, encoded in zip(positions, self._encode_with_stride([inputs[i] for i in positions], stride)):
                results[position] = encoded
        return results

    def _encode_with_stride(self, texts: list[str], stride: int) -> list[EncodedInput[WindowTokens]]:
        encoding = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        # Window k starts this many tokens after window k-1 in the whole text's token sequence.
        window_step = self.content_length - stride
        results = []
        for rows, cut_off in windows_of_inputs(
            encoding["overflow_to_sample_mapping"], len(texts), self.settings.limits.max_windows_per_input
        ):
            windows = []
            for k, row in enumerate(rows):
                ids = encoding["input_ids"][row]
                tokens = WindowTokens(
                    token_ids=ids,
                    tokens=self.tokenizer.convert_ids_to_tokens(ids),
                    offsets=encoding["offset_mapping"][row],
                    special_tokens_mask=encoding["special_tokens_mask"][row],
                    index_offset=k * window_step,
                )
                windows.append(Window(ids, token_types_of(encoding, row), tokens))
            results.append(EncodedInput(windows, truncated=cut_off))
        return results

    def postprocess(
        self, item: str, params: TokenParams, encoded: EncodedInput[WindowTokens], outputs: list[dict[str, np.ndarray]]
    ) -> Any:
        entities = []
        for window, output in zip(encoded.windows, outputs):
            predictions = gather_predictions(
                item, window.detail, softmax(output["logits"]), self.uses_subword_prefix, self.unk_token_id
            )
            grouped = aggregate(
                predictions, params.aggregation_strategy, params.labels, self.tokenizer.convert_tokens_to_string
            )
            entities.extend(drop_ignored(grouped, params.ignore_labels))
        if len(encoded.windows) > 1:
            entities = merge_overlapping(entities)
        return entities

    def render(self, result: list[Entity], params: TokenParams) -> Any:
        return to_json(result)
