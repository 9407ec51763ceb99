"""Grouping a TorchServe batch into forward passes, and padding them: pure functions.

One long input padded into a batch of short ones makes every row pay for its length, so the
batch is sorted by token count and cut into micro-batches where padding would cost more than
another forward pass; callers put results back in request order by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

PaddingSide = Literal["right", "left"]


def plan_micro_batches(
    lengths: Sequence[int],
    max_batch_size: int,
    max_batch_tokens: int,
    sort_by_length: bool = True,
    overhead_tokens: int = 32,
) -> list[list[int]]:
    """Indices into ``lengths`` grouped into forward passes; every index appears exactly once.

    Sorted by length, the inputs are cut where the estimated cost is least: each forward pass
    costs ``overhead_tokens`` (its fixed price, in tokens' worth of compute) plus rows x width.
    A pass holds at most ``max_batch_size`` rows and ``max_batch_tokens`` padded tokens (an input
    longer than that budget runs alone). Without sorting, arrival order is cut into full passes.
    """
    count = len(lengths)
    if not sort_by_length:
        return _fill_in_order(lengths, max_batch_size, max_batch_tokens)
    order = sorted(range(count), key=lengths.__getitem__)
    ordered = [lengths[i] for i in order]
    # cheapest[i]: least cost of the first i sorted inputs; cut[i]: where their last pass starts.
    cheapest = [0.0] + [float("inf")] * count
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        width = ordered[end - 1]
        for start in range(end - 1, max(0, end - max_batch_size) - 1, -1):
            rows = end - start
            if rows > 1 and rows * width > max_batch_tokens:
                break
            cost = cheapest[start] + overhead_tokens + rows * width
            if cost < cheapest[end]:
                cheapest[end], cut[end] = cost, start
    batches: list[list[int]] = []
    end = count
    while end > 0:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


def plan_packed_passes(lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices into ``lengths`` grouped into padding-free passes: sorted by length, cut only where
    a pass would exceed ``max_batch_size`` inputs or ``max_batch_tokens`` real tokens (a longer
    input runs alone). Without padding, fewer passes are always cheaper."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    passes: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in order:
        if current and (len(current) == max_batch_size or tokens + lengths[index] > max_batch_tokens):
            passes.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    if current:
        passes.append(current)
    return passes


def _fill_in_order(lengths: Sequence[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index, length in enumerate(lengths):
        grown = max(longest, length)
        if current and (len(current) + 1 > max_batch_size or grown * (len(current) + 1) > max_batch_tokens):
            batches.append(current)
            current, grown = [], length
        current.append(index)
        longest = grown
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
