"""Padding-free execution of BERT sequence classifiers: every token of a batch in one pass.

A padded forward pass makes every row as long as the longest, and on a CPU each pass also pays a
fixed price (streaming the weights through the cache), so sorting a batch into length-matched
passes trades one cost for the other. Here the per-token layers (embeddings, projections,
feed-forward, layer norms: nearly all the compute) run once over the real tokens of the whole
batch, packed end to end; only attention, which mixes tokens within one input, is run on padded
groups of similar length. The answers are the model's own, computed with the same modules
(logits equal to the padded forward within float rounding, ~1e-6).

Only the architecture checked by :func:`packing_unsupported` is run this way; everything else
takes the model's own forward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional
from transformers import BertForSequenceClassification

from handler.api.settings import HandlerSettings
from handler.engine.batching import plan_micro_batches

logger = logging.getLogger(__name__)

# Attention groups are cut like forward passes (handler/engine/batching.py), with a fixed price per
# group of this many tokens' worth of work: attention has no weights to stream, so it is small.
ATTENTION_GROUP_OVERHEAD_TOKENS = 32


def packing_unsupported(model: Any) -> str | None:
    """Why ``model`` cannot run packed, or None when it can."""
    if type(model) is not BertForSequenceClassification:
        return f"{type(model).__name__} is not BertForSequenceClassification"
    config = model.config
    if config._attn_implementation != "sdpa":
        return f"attention implementation {config._attn_implementation!r} (packing uses sdpa)"
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type {config.position_embedding_type!r}"
    if config.is_decoder or config.add_cross_attention:
        return "the encoder is configured as a decoder"
    if model.bert.pooler is None:
        return "the model has no pooler"
    # Dynamic int8 scales activations per tensor, so its answers would move with the packing.
    if any(type(module) is not nn.Linear for module in model.modules() if "Linear" in type(module).__name__):
        return "its linear layers are quantized"
    return None


def packed_classifier_for(model: Any, settings: HandlerSettings) -> PackedBertClassifier | None:
    """The padding-free runner for ``model`` when the settings ask for it and the model allows it."""
    if not settings.packed_forward:
        return None
    # A compiled forward is what torch_compile asks for; packing would bypass it.
    reason = "torch_compile is set" if settings.torch_compile else packing_unsupported(model)
    if reason is not None:
        logger.info("padded forward passes: %s", reason)
        return None
    logger.info("padding-free forward passes (packed_forward)")
    return PackedBertClassifier(model)


class PackedBertClassifier:
    """Logits of a BertForSequenceClassification for rows of token ids, without padding."""

    def __init__(self, model: BertForSequenceClassification) -> None:
        reason = packing_unsupported(model)
        if reason is not None:
            raise ValueError(f"cannot pack this model: {reason}")
        self.model = model
        self.bert = model.bert
        config = model.config
        self.heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        # Query, key and value in one matrix product: one read of the input, one output to index.
        self.query_key_value = [_fused_projection(layer.attention.self) for layer in self.bert.encoder.layer]

    @property
    def device(self) -> torch.device:
        return self.bert.embeddings.word_embeddings.weight.device

    def logits(
        self, input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]] | None
    ) -> torch.Tensor:
        """Logits, one row per input row, in the order given; rows must be non-empty."""
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
        positions = torch.cat([torch.arange(n, device=device) for n in sorted_lengths])
        starts = [0]
        for length in sorted_lengths[:-1]:
            starts.append(starts[-1] + length)
        groups = [
            _AttentionGroup.build(group, sorted_lengths, starts, device)
            for group in plan_micro_batches(
                sorted_lengths, len(sorted_lengths), 1 << 62, True, ATTENTION_GROUP_OVERHEAD_TOKENS
            )
        ]

        embeddings = self.bert.embeddings
        hidden = embeddings.LayerNorm(
            embeddings.word_embeddings(ids)
            + embeddings.token_type_embeddings(types)
            + embeddings.position_embeddings(positions)
        )
        for layer, query_key_value in zip(self.bert.encoder.layer, self.query_key_value):
            projected = query_key_value(hidden)
            scale = layer.attention.self.scaling
            attended = [group.attend(projected, self.heads, self.head_size, scale) for group in groups]
            context = attended[0] if len(attended) == 1 else torch.cat(attended)
            hidden = layer.attention.output.LayerNorm(layer.attention.output.dense(context) + hidden)
            hidden = layer.output.LayerNorm(layer.output.dense(layer.intermediate(hidden)) + hidden)

        first_tokens = hidden[torch.tensor(starts, device=device)]
        pooled = self.bert.pooler.activation(self.bert.pooler.dense(first_tokens))
        sorted_logits = self.model.classifier(self.model.dropout(pooled))
        restore = torch.empty(len(order), dtype=torch.long, device=device)
        restore[torch.tensor(order, device=device)] = torch.arange(len(order), device=device)
        return sorted_logits[restore]


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


def _fused_projection(attention: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    parts = (attention.query, attention.key, attention.value)
    weight = torch.cat([part.weight for part in parts]).detach()
    bias = torch.cat([part.bias for part in parts]).detach()
    return lambda hidden: functional.linear(hidden, weight, bias)
