"""The handler's own queue for the async worker mode: a batch starts the moment the model is free,
holds everything that waited (up to its bound), refuses beyond the queue's bound, skips what its
waiter gave up on, and keeps serving after a batch fails."""

from __future__ import annotations

import threading
import time

import pytest

from handler.serving import model_free_batching
from handler.serving.model_free_batching import ModelFreeBatcher


class HeldModel:
    """A model whose passes wait for ``release`` (set: run at once), recording each batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def run(self, items):
        self.batches.append(list(items))
        self.started.set()
        self.release.wait(10)
        if any(item < 0 for item in items):
            raise ValueError("a negative item")
        return [item * 10 for item in items]


def make(model: HeldModel, max_batch: int = 4, max_waiting: int = 100) -> ModelFreeBatcher:
    return ModelFreeBatcher(model.run, max_batch, max_waiting, failed=lambda item, error: -1)


def test_a_lone_request_runs_at_once_without_waiting_for_company():
    model = HeldModel()
    model.release.set()
    batcher = make(model)
    started = time.perf_counter()
    assert batcher.submit(7).result(timeout=5) == 70
    # No batching window: well under the 1 ms TorchServe's window alone would add, plus scheduling.
    assert time.perf_counter() - started < 0.05
    assert model.batches == [[7]]
    batcher.stop()


def test_requests_that_arrive_during_a_pass_form_the_next_batch_in_order_up_to_the_bound():
    model = HeldModel()
    batcher = make(model, max_batch=4)
    first = batcher.submit(0)
    assert model.started.wait(5)
    waiting = [batcher.submit(item) for item in range(1, 7)]
    model.release.set()
    assert first.result(timeout=5) == 0
    assert [future.result(timeout=5) for future in waiting] == [10 * item for item in range(1, 7)]
    assert model.batches == [[0], [1, 2, 3, 4], [5, 6]]
    batcher.stop()


class TimedModel:
    """Passes of ``pass_s`` seconds; records each batch and when it started."""

    def __init__(self, pass_s: float) -> None:
        self.pass_s = pass_s
        self.batches: list[list[int]] = []
        self.starts: list[float] = []

    def run(self, items):
        self.starts.append(time.monotonic())
        self.batches.append(list(items))
        time.sleep(self.pass_s)
        return list(items)


@pytest.fixture
def wide_regroup(monkeypatch):
    """A regroup window as long as the last pass (capped at 0.2 s), wide enough for a loaded machine's timing."""
    monkeypatch.setattr(model_free_batching, "REGROUP_SHARE", 1.0)
    monkeypatch.setattr(model_free_batching, "REGROUP_CAP_S", 0.2)


def test_clients_answered_a_moment_ago_regroup_into_one_batch_instead_of_alternating_cohorts(wide_regroup):
    # Passes of 50 ms: right after one, returning clients get up to 50 ms to regroup.
    model = TimedModel(0.05)
    batcher = ModelFreeBatcher(model.run, 8, 100, failed=lambda item, error: None)
    blocker = batcher.submit(-1)
    time.sleep(0.01)
    cohort = [batcher.submit(item) for item in range(4)]
    blocker.result(timeout=5)
    [future.result(timeout=5) for future in cohort]
    # The four clients come back: two at once, two 10 ms later.
    back = [batcher.submit(10), batcher.submit(11)]
    time.sleep(0.01)
    back += [batcher.submit(12), batcher.submit(13)]
    [future.result(timeout=5) for future in back]
    assert model.batches == [[-1], [0, 1, 2, 3], [10, 11, 12, 13]]


def test_a_request_that_finds_the_model_idle_never_waits_to_regroup(wide_regroup):
    model = TimedModel(0.05)
    batcher = ModelFreeBatcher(model.run, 8, 100, failed=lambda item, error: None)
    [future.result(timeout=5) for future in [batcher.submit(item) for item in range(4)]]
    # Idle for longer than the regroup window (50 ms): the next request runs at once.
    time.sleep(0.1)
    submitted = time.monotonic()
    batcher.submit(99).result(timeout=5)
    assert model.batches[-1] == [99]
    assert model.starts[-1] - submitted < 0.025


def test_beyond_the_queue_bound_a_request_is_refused_at_once_and_room_frees_as_answers_leave():
    model = HeldModel()
    batcher = make(model, max_batch=2, max_waiting=3)
    running = batcher.submit(1)
    assert model.started.wait(5)
    queued = [batcher.submit(2), batcher.submit(3)]
    assert batcher.in_flight() == 3
    assert batcher.submit(4) is None
    model.release.set()
    assert [future.result(timeout=5) for future in [running, *queued]] == [10, 20, 30]
    deadline = time.monotonic() + 5
    while batcher.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.submit(5).result(timeout=5) == 50
    batcher.stop()


def test_a_client_answered_a_moment_ago_finds_the_room_its_request_left():
    # The next request is sent from the answer's own callback, the earliest a client can send it
    # (before the fix the batch still counted as running there and the request was refused 503).
    model = HeldModel()
    model.release.set()
    batcher = make(model, max_batch=1, max_waiting=1)
    followers: list = []
    first = batcher.submit(1)
    first.add_done_callback(lambda _: followers.append(batcher.submit(2)))
    assert first.result(timeout=5) == 10
    deadline = time.monotonic() + 5
    while not followers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert followers[0] is not None and followers[0].result(timeout=5) == 20
    batcher.stop()


def test_a_request_whose_waiter_gave_up_is_not_run():
    model = HeldModel()
    batcher = make(model)
    batcher.submit(1)
    assert model.started.wait(5)
    abandoned = batcher.submit(2)
    kept = batcher.submit(3)
    assert abandoned.cancel()
    model.release.set()
    assert kept.result(timeout=5) == 30
    assert model.batches == [[1], [3]]
    batcher.stop()


def test_a_failing_batch_answers_its_own_requests_as_failed_and_the_next_batch_runs():
    model = HeldModel()
    model.release.set()
    batcher = make(model)
    assert batcher.submit(-1).result(timeout=5) == -1
    assert batcher.submit(2).result(timeout=5) == 20
    batcher.stop()


@pytest.mark.parametrize("max_batch, max_waiting", [(0, 1), (1, 0)])
def test_bounds_below_one_are_refused(max_batch, max_waiting):
    with pytest.raises(ValueError):
        ModelFreeBatcher(lambda items: items, max_batch, max_waiting, failed=lambda item, error: None)
