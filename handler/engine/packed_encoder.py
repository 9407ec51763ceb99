"""Padding-free execution of encoder models: every token of a batch in one pass.

A padded forward pass makes every row as long as the longest, and on a CPU each pass also pays a
fixed price (streaming the weights through the cache), so sorting a batch into length-matched
passes trades one cost for the other. Here the per-token layers (embeddings, projections,
feed-forward, layer norms: nearly all the compute) run once over the real tokens of the whole
batch, packed end to end; only attention, which mixes tokens within one input, is run on padded
groups of similar length. The answers are the model's own, computed with the same modules
(outputs equal to the padded forward within float rounding, ~1e-6).

The architectures and heads in :data:`PACKABLE` are run this way (BERT, RoBERTa, XLM-R, ELECTRA,
DistilBERT; sequence and pair classification, token classification, question answering);
everything else takes the model's own forward, and :func:`packing_unsupported` says why.
Whether packing pays on the machine at hand is measured at load (handler/engine/pass_costs.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from transformers import (
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    ElectraForQuestionAnswering,
    ElectraForSequenceClassification,
    ElectraForTokenClassification,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
    XLMRobertaForTokenClassification,
)

from handler.engine.batching import plan_micro_batches
from handler.engine.execution import ExecutionPolicy

logger = logging.getLogger(__name__)

# Attention groups are cut like forward passes (handler/engine/batching.py), with a fixed price per
# group of this many tokens' worth of work: attention has no weights to stream, so it is small.
ATTENTION_GROUP_OVERHEAD_TOKENS = 32


class Backbone(Enum):
    """How an encoder embeds tokens and names its layers' modules."""

    BERT = "bert"
    ROBERTA = "roberta"
    ELECTRA = "electra"
    DISTILBERT = "distilbert"


class Head(Enum):
    """What the task head reads from the encoder's last hidden states."""

    BERT_POOLED = "bert_pooled"  # BERT's pooler over the first token, then the classifier
    FIRST_TOKEN = "first_token"  # a classification head module that takes features[:, 0]
    DISTILBERT_FIRST_TOKEN = "distilbert_first_token"  # pre_classifier, ReLU, classifier
    TOKENS = "tokens"  # a classifier over every token
    SPANS = "spans"  # qa_outputs over every token: start and end logits


# Model class -> (attribute holding the encoder, its kind, the head).
PACKABLE: dict[type, tuple[str, Backbone, Head]] = {
    BertForSequenceClassification: ("bert", Backbone.BERT, Head.BERT_POOLED),
    BertForTokenClassification: ("bert", Backbone.BERT, Head.TOKENS),
    BertForQuestionAnswering: ("bert", Backbone.BERT, Head.SPANS),
    RobertaForSequenceClassification: ("roberta", Backbone.ROBERTA, Head.FIRST_TOKEN),
    RobertaForTokenClassification: ("roberta", Backbone.ROBERTA, Head.TOKENS),
    RobertaForQuestionAnswering: ("roberta", Backbone.ROBERTA, Head.SPANS),
    XLMRobertaForSequenceClassification: ("roberta", Backbone.ROBERTA, Head.FIRST_TOKEN),
    XLMRobertaForTokenClassification: ("roberta", Backbone.ROBERTA, Head.TOKENS),
    XLMRobertaForQuestionAnswering: ("roberta", Backbone.ROBERTA, Head.SPANS),
    ElectraForSequenceClassification: ("electra", Backbone.ELECTRA, Head.FIRST_TOKEN),
    ElectraForTokenClassification: ("electra", Backbone.ELECTRA, Head.TOKENS),
    ElectraForQuestionAnswering: ("electra", Backbone.ELECTRA, Head.SPANS),
    DistilBertForSequenceClassification: ("distilbert", Backbone.DISTILBERT, Head.DISTILBERT_FIRST_TOKEN),
    DistilBertForTokenClassification: ("distilbert", Backbone.DISTILBERT, Head.TOKENS),
    DistilBertForQuestionAnswering: ("distilbert", Backbone.DISTILBERT, Head.SPANS),
}


def packing_unsupported(model: Any) -> str | None:
    """Why ``model`` cannot run packed, or None when it can."""
    entry = PACKABLE.get(type(model))
    if entry is None:
        known = ", ".join(sorted(cls.__name__ for cls in PACKABLE))
        return f"{type(model).__name__} has no padding-free implementation (those that do: {known})"
    attribute, backbone, head = entry
    config = model.config
    if config._attn_implementation != "sdpa":
        return f"attention implementation {config._attn_implementation!r} (packing uses sdpa)"
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return f"position_embedding_type {config.position_embedding_type!r}"
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return "the encoder is configured as a decoder"
    if head is Head.BERT_POOLED and getattr(getattr(model, attribute), "pooler", None) is None:
        return "the model has no pooler"
    # Dynamic int8 scales activations per tensor, so its answers would move with the packing.
    if any(type(module) is not nn.Linear for module in model.modules() if "Linear" in type(module).__name__):
        return "its linear layers are quantized"
    return None


class _FusedProjection:
    """Query, key and value in one matrix product: one read of the input, one output to index."""

    def __init__(self, parts: Sequence[nn.Linear]) -> None:
        # A Linear of its own, so that low-precision weight copies (weight_copies.py) reach it too.
        weight = torch.cat([part.weight for part in parts]).detach()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
        self.linear.weight = nn.Parameter(weight, requires_grad=False)
        self.linear.bias = nn.Parameter(torch.cat([part.bias for part in parts]).detach(), requires_grad=False)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return functional.linear(hidden, self.linear.weight, self.linear.bias)


@dataclass(frozen=True)
class _Layer:
    """One transformer layer seen the same way for every backbone."""

    query_key_value: _FusedProjection
    scale: float
    attention_output: nn.Module
    attention_norm: nn.Module
    feed_forward: Callable[[torch.Tensor], torch.Tensor]
    output_norm: nn.Module


class PackedEncoder:
    """The outputs of a supported encoder model for rows of token ids, without padding."""

    def __init__(self, model: Any) -> None:
        reason = packing_unsupported(model)
        if reason is not None:
            raise ValueError(f"cannot pack this model: {reason}")
        self.model = model
        attribute, self.backbone, self.head = PACKABLE[type(model)]
        self.encoder = getattr(model, attribute)
        config = model.config
        # DistilBertConfig maps these names onto its own (n_heads, dim).
        self.heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        self.layers = [_layer_of(layer, self.backbone) for layer in self._encoder_layers()]

    def own_linear_layers(self) -> list[nn.Linear]:
        """The linear layers this runner holds beyond the model's (the fused projections)."""
        return [layer.query_key_value.linear for layer in self.layers]

    @property
    def output_fields(self) -> tuple[str, ...]:
        return ("start_logits", "end_logits") if self.head is Head.SPANS else ("logits",)

    @property
    def token_level(self) -> bool:
        return self.head in (Head.TOKENS, Head.SPANS)

    @property
    def device(self) -> torch.device:
        return self.encoder.embeddings.word_embeddings.weight.device

    def outputs(
        self,
        input_ids: Sequence[Sequence[int]],
        token_type_ids: Sequence[Sequence[int]] | None,
        representations: bool = False,
    ) -> list[dict[str, np.ndarray]]:
        """Per input row, in the order given, the model's outputs (float32 numpy): one row of
        logits for a sequence head, one row per token for token and span heads. Rows must be
        non-empty. ``representations``: also "representation", the mean of the row's last hidden
        states (as the padded pass gives it; encoder_runner.last_hidden_states)."""
        lengths = [len(row) for row in input_ids]
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        sorted_lengths = [lengths[i] for i in order]
        device = self.device
        ids = torch.tensor([t for i in order for t in input_ids[i]], dtype=torch.long, device=device)
        types = (
            torch.tensor([t for i in order for t in token_type_ids[i]], dtype=torch.long, device=device)
            if token_type_ids is not None
            else torch.zeros_like(ids)
        )
        starts = [0]
        for length in sorted_lengths[:-1]:
            starts.append(starts[-1] + length)
        groups = [
            _AttentionGroup.build(group, sorted_lengths, starts, device)
            for group in plan_micro_batches(
                sorted_lengths, len(sorted_lengths), 1 << 62, True, ATTENTION_GROUP_OVERHEAD_TOKENS
            )
        ]
        hidden = self._embed(ids, types, sorted_lengths, starts)
        for layer in self.layers:
            projected = layer.query_key_value(hidden)
            attended = [group.attend(projected, self.heads, self.head_size, layer.scale) for group in groups]
            context = attended[0] if len(attended) == 1 else torch.cat(attended)
            hidden = layer.attention_norm(layer.attention_output(context) + hidden)
            hidden = layer.output_norm(layer.feed_forward(hidden) + hidden)

        sorted_rows = self._read_head(hidden, starts, sorted_lengths)
        if representations:
            owner = torch.repeat_interleave(
                torch.arange(len(sorted_lengths), device=device), torch.tensor(sorted_lengths, device=device)
            )
            sums = torch.zeros(len(sorted_lengths), hidden.shape[1], device=device, dtype=torch.float32)
            sums.index_add_(0, owner, hidden.to(torch.float32))
            counts = torch.tensor(sorted_lengths, device=device, dtype=torch.float32)[:, None]
            means = ExecutionPolicy.to_numpy(sums / counts)
            for row, mean in zip(sorted_rows, means):
                row["representation"] = mean
        results: list[dict[str, np.ndarray]] = [{} for _ in order]
        for position, index in enumerate(order):
            results[index] = sorted_rows[position]
        return results

    def logits(self, input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]] | None) -> np.ndarray:
        """Sequence heads: one row of logits per input row, in the order given."""
        if self.token_level:
            raise ValueError("logits() is for sequence heads; use outputs()")
        return np.stack([row["logits"] for row in self.outputs(input_ids, token_type_ids)])

    def _encoder_layers(self) -> Sequence[nn.Module]:
        if self.backbone is Backbone.DISTILBERT:
            return self.encoder.transformer.layer
        return self.encoder.encoder.layer

    def _embed(
        self, ids: torch.Tensor, types: torch.Tensor, lengths: Sequence[int], starts: Sequence[int]
    ) -> torch.Tensor:
        embeddings = self.encoder.embeddings
        device = ids.device
        offsets = torch.cat([torch.arange(n, device=device) for n in lengths])
        if self.backbone is Backbone.ROBERTA:
            # RoBERTa counts positions from padding_idx + 1 and gives pad tokens padding_idx, as
            # create_position_ids_from_input_ids does on each row.
            real = ids.ne(self.pad_id).long()
            running = torch.cumsum(real, 0)
            before_row = torch.repeat_interleave(
                torch.cat([torch.zeros(1, dtype=torch.long, device=device), running])[
                    torch.tensor(starts, device=device)
                ],
                torch.tensor(lengths, device=device),
            )
            positions = (running - before_row) * real + self.pad_id
        else:
            positions = offsets
        summed = embeddings.word_embeddings(ids) + embeddings.position_embeddings(positions)
        if self.backbone is not Backbone.DISTILBERT:
            summed = summed + embeddings.token_type_embeddings(types)
        hidden = embeddings.LayerNorm(summed)
        project = getattr(self.encoder, "embeddings_project", None)
        return project(hidden) if project is not None else hidden

    def _read_head(
        self, hidden: torch.Tensor, starts: Sequence[int], lengths: Sequence[int]
    ) -> list[dict[str, np.ndarray]]:
        model, head = self.model, self.head
        if head in (Head.TOKENS, Head.SPANS):
            projection = model.classifier if head is Head.TOKENS else model.qa_outputs
            scores = ExecutionPolicy.to_numpy(projection(hidden))
            per_row = np.split(scores, np.cumsum(lengths)[:-1])
            if head is Head.TOKENS:
                return [{"logits": row} for row in per_row]
            return [{"start_logits": row[:, 0], "end_logits": row[:, 1]} for row in per_row]
        first_tokens = hidden[torch.tensor(starts, device=hidden.device)]
        if head is Head.BERT_POOLED:
            logits = model.classifier(self.encoder.pooler(first_tokens[:, None, :]))
        elif head is Head.FIRST_TOKEN:
            logits = model.classifier(first_tokens[:, None, :])
        else:
            logits = model.classifier(functional.relu(model.pre_classifier(first_tokens)))
        return [{"logits": row} for row in ExecutionPolicy.to_numpy(logits)]


def _layer_of(layer: nn.Module, backbone: Backbone) -> _Layer:
    if backbone is Backbone.DISTILBERT:
        attention, ffn = layer.attention, layer.ffn
        return _Layer(
            _FusedProjection((attention.q_lin, attention.k_lin, attention.v_lin)),
            attention.scaling,
            attention.out_lin,
            layer.sa_layer_norm,
            lambda hidden: ffn.lin2(ffn.activation(ffn.lin1(hidden))),
            layer.output_layer_norm,
        )
    attention = layer.attention.self
    return _Layer(
        _FusedProjection((attention.query, attention.key, attention.value)),
        attention.scaling,
        layer.attention.output.dense,
        layer.attention.output.LayerNorm,
        lambda hidden: layer.output.dense(layer.intermediate(hidden)),
        layer.output.LayerNorm,
    )


class _AttentionGroup:
    """Consecutive packed inputs attended together, padded to the longest of them."""

    def __init__(self, gather: torch.Tensor, mask: torch.Tensor | None, real_positions: torch.Tensor | None) -> None:
        self.gather = gather  # (rows, width) packed-token index of each padded position
        self.mask = mask  # (rows, 1, 1, width) True at real tokens; None when no row is padded
        self.real_positions = real_positions  # flat padded positions of the real tokens, in order

    @classmethod
    def build(
        cls, members: Sequence[int], lengths: Sequence[int], starts: Sequence[int], device: torch.device
    ) -> _AttentionGroup:
        # The planner keeps groups contiguous in sorted order, so their outputs concatenate in order.
        assert list(members) == list(range(members[0], members[0] + len(members))), "groups must be contiguous"
        member_lengths = [lengths[i] for i in members]
        width = max(member_lengths)
        offsets = torch.arange(width, device=device)
        last_token = starts[members[-1]] + member_lengths[-1] - 1
        first_tokens = torch.tensor([starts[i] for i in members], device=device)
        gather = (first_tokens[:, None] + offsets[None, :]).clamp(max=last_token)
        if min(member_lengths) == width:
            return cls(gather, None, None)
        mask = offsets[None, :] < torch.tensor(member_lengths, device=device)[:, None]
        # An index list from the lengths rather than a boolean mask: no device sync on a GPU.
        real_positions = [row * width + offset for row, length in enumerate(member_lengths) for offset in range(length)]
        return cls(gather, mask[:, None, None, :], torch.tensor(real_positions, device=device))

    def attend(self, projected: torch.Tensor, heads: int, head_size: int, scale: float) -> torch.Tensor:
        rows, width = self.gather.shape
        query, key, value = projected[self.gather].view(rows, width, 3, heads, head_size).permute(2, 0, 3, 1, 4)
        context = functional.scaled_dot_product_attention(query, key, value, attn_mask=self.mask, scale=scale)
        context = context.transpose(1, 2).reshape(rows * width, heads * head_size)
        return context if self.real_positions is None else context[self.real_positions]
