import random

import numpy as np
import pytest

from handler.engine.batching import attention_mask, pad_rows, plan_micro_batches, unpad_row


def test_every_index_once_sorted_by_length_and_bounded():
    lengths = [50, 3, 20, 7, 3, 60, 12]
    plan = plan_micro_batches(lengths, max_batch_size=3, max_batch_tokens=10_000)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    assert all(len(batch) <= 3 for batch in plan)
    flat = [lengths[i] for batch in plan for i in batch]
    assert flat == sorted(lengths)
    assert len(plan) > 1


def test_token_budget_limits_padded_rows_times_width():
    lengths = [10, 10, 10, 40]
    plan = plan_micro_batches(lengths, max_batch_size=16, max_batch_tokens=40)
    assert all(len(batch) * max(lengths[i] for i in batch) <= 40 for batch in plan)
    assert plan[-1] == [3]


def test_an_input_over_the_token_budget_still_runs_alone():
    assert plan_micro_batches([100], max_batch_size=4, max_batch_tokens=10) == [[0]]


def brute_force_cost(lengths, max_size, max_tokens, overhead):
    """The least cost over every way to cut the sorted lengths into contiguous passes."""
    ordered = sorted(lengths)
    best = {0: 0.0}
    for end in range(1, len(ordered) + 1):
        best[end] = min(
            best[start] + overhead + (end - start) * ordered[end - 1]
            for start in range(end)
            if end - start <= max_size and (end - start == 1 or (end - start) * ordered[end - 1] <= max_tokens)
        )
    return best[len(ordered)]


def plan_cost(plan, lengths, overhead):
    return sum(overhead + len(batch) * max(lengths[i] for i in batch) for batch in plan)


@pytest.mark.parametrize("seed", range(20))
def test_the_plan_is_the_cheapest_cut(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 120) for _ in range(rng.randint(1, 14))]
    plan = plan_micro_batches(lengths, max_batch_size=6, max_batch_tokens=400, overhead_tokens=32)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    assert plan_cost(plan, lengths, 32) == pytest.approx(brute_force_cost(lengths, 6, 400, 32))


def test_similar_lengths_share_a_pass_and_outliers_get_their_own():
    lengths = [10, 11, 12, 10, 200]
    plan = plan_micro_batches(lengths, max_batch_size=32, max_batch_tokens=10_000, overhead_tokens=32)
    assert plan == [[0, 3, 1, 2], [4]]
    # with free forward passes, every input runs alone: no padding at all
    assert len(plan_micro_batches(lengths, 32, 10_000, overhead_tokens=0)) == 5


def test_without_sorting_the_order_is_kept():
    assert plan_micro_batches([5, 1, 3], 2, 100, sort_by_length=False) == [[0, 1], [2]]


def test_empty_batch_has_no_plan():
    assert plan_micro_batches([], 4, 100) == []


def test_padding_right_and_left():
    rows = [[1, 2, 3], [4]]
    np.testing.assert_array_equal(pad_rows(rows, 0), [[1, 2, 3], [4, 0, 0]])
    np.testing.assert_array_equal(pad_rows(rows, 9, "left"), [[1, 2, 3], [9, 9, 4]])
    np.testing.assert_array_equal(attention_mask([3, 1], 3), [[1, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(attention_mask([3, 1], 3, "left"), [[1, 1, 1], [0, 0, 1]])


def test_unpad_row_returns_the_real_positions():
    row = np.arange(5)
    np.testing.assert_array_equal(unpad_row(row, 2, 5), [0, 1])
    np.testing.assert_array_equal(unpad_row(row, 2, 5, "left"), [3, 4])
