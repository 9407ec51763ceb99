import numpy as np

from handler.batching import attention_mask, pad_rows, plan_micro_batches, unpad_row


def test_every_index_once_sorted_by_length_and_bounded():
    lengths = [50, 3, 20, 7, 3, 60, 12]
    plan = plan_micro_batches(lengths, max_batch_size=3, max_batch_tokens=10_000)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    assert all(len(batch) <= 3 for batch in plan)
    flat = [lengths[i] for batch in plan for i in batch]
    assert flat == sorted(lengths)


def test_token_budget_limits_padded_rows_times_width():
    lengths = [10, 10, 10, 40]
    plan = plan_micro_batches(lengths, max_batch_size=16, max_batch_tokens=40)
    assert all(len(batch) * max(lengths[i] for i in batch) <= 40 for batch in plan)
    assert plan[-1] == [3]


def test_an_input_over_the_token_budget_still_runs_alone():
    assert plan_micro_batches([100], max_batch_size=4, max_batch_tokens=10) == [[0]]


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
