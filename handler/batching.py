"""Grouping a TorchServe batch into forward passes, and padding them: pure functions.

One long input padded into a batch of short ones makes every row pay for its length, so the
batch is sorted by token count and cut into micro-batches bounded in rows and in padded tokens;
callers put results back in request order by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

PaddingSide = Literal["right", "left"]


def plan_micro_batches(
    lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int, sort_by_length: bool = True
) -> list[list[int]]:
    """Indices into ``lengths`` grouped into micro-batches; every index appears exactly once."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if sort_by_length else range(len(lengths))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        grown_longest = max(longest, lengths[index])
        too_many_rows = len(current) + 1 > max_batch_size
        too_many_tokens = grown_longest * (len(current) + 1) > max_batch_tokens
        if current and (too_many_rows or too_many_tokens):
            batches.append(current)
            current, grown_longest = [], lengths[index]
        current.append(index)
        longest = grown_longest
    if current:
        batches.append(current)
    return batches


def pad_rows(rows: Sequence[Sequence[int]], pad_value: int, side: PaddingSide = "right") -> np.ndarray:
    """An int64 matrix of ``rows`` padded to the longest with ``pad_value``."""
    width = max((len(row) for row in rows), default=0)
    matrix = np.full((len(rows), width), pad_value, dtype=np.int64)
    for i, row in enumerate(rows):
        if not row:
            continue
        if side == "right":
            matrix[i, : len(row)] = row
        else:
            matrix[i, width - len(row) :] = row
    return matrix


def attention_mask(lengths: Sequence[int], width: int, side: PaddingSide = "right") -> np.ndarray:
    positions = np.arange(width)[None, :]
    lengths_column = np.asarray(lengths, dtype=np.int64)[:, None]
    if side == "right":
        return (positions < lengths_column).astype(np.int64)
    return (positions >= width - lengths_column).astype(np.int64)


def unpad_row(row: np.ndarray, length: int, width: int, side: PaddingSide = "right") -> np.ndarray:
    """The first axis of one padded row (token positions) cut back to its real ``length``."""
    return row[:length] if side == "right" else row[width - length :]
