"""Workers on shares of the cores: a lone request borrows the idle ones (handler/engine/core_sharing.py).

flock locks belong to an open file, not a process, so two CoreSharing objects of one process on one
lock file stand for two workers; threads play their passes."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from handler.engine.core_sharing import (
    ACTIVE_SPIN_COUNT,
    DEFAULT_SPIN_COUNT,
    LONE_REQUEST_CHARACTERS,
    CoreSharing,
    borrows,
    core_sharing_for,
    openmp_spin_count,
)


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workers(tmp_path, threads_restored):
    pair = [CoreSharing(tmp_path / "cores.lock", 1, 2) for _ in range(2)]
    yield pair
    for sharing in pair:
        sharing.close()


def test_a_lone_request_on_an_idle_machine_runs_on_every_core_and_gives_them_back(workers):
    first, _ = workers
    with first.pass_for(lone=True) as threads:
        assert threads == 2 and torch.get_num_threads() == 2 and first.borrowing
    assert torch.get_num_threads() == 1 and not first.borrowing and first.borrowed_batches == 1
    with first.pass_for(lone=False) as threads:
        assert threads == 1 and torch.get_num_threads() == 1  # a batch of several keeps its share
    assert first.borrowed_batches == 1


def test_a_lone_request_keeps_its_share_while_another_worker_is_in_a_pass(workers):
    first, second = workers
    with second.pass_for(lone=False):
        with first.pass_for(lone=True) as threads:
            assert threads == 1 and torch.get_num_threads() == 1
    assert first.borrowed_batches == 0
    with first.pass_for(lone=True) as threads:  # the other pass ended: the cores are idle again
        assert threads == 2


def test_a_worker_waits_for_a_borrowed_pass_to_end_rather_than_run_beside_it(workers):
    first, second = workers
    borrowed, released = threading.Event(), threading.Event()
    timeline: list[str] = []

    def lone_request() -> None:
        with first.pass_for(lone=True):
            borrowed.set()
            time.sleep(0.2)
            timeline.append("borrowed pass ended")
        released.set()

    thread = threading.Thread(target=lone_request)
    thread.start()
    assert borrowed.wait(5)
    with second.pass_for(lone=False) as threads:
        timeline.append("second pass started")
        assert threads == 1
    thread.join(5)
    assert released.is_set()
    assert timeline == ["borrowed pass ended", "second pass started"]


def test_two_lone_requests_at_once_never_both_borrow(workers):
    first, second = workers
    inside = threading.Barrier(2, timeout=5)
    seen: list[int] = []

    def lone(sharing: CoreSharing) -> None:
        inside.wait()
        for _ in range(50):
            with sharing.pass_for(lone=True):
                seen.append(int(sharing.borrowing))
                time.sleep(0.001)
                seen.append(-int(sharing.borrowing))

    pool = [threading.Thread(target=lone, args=(sharing,)) for sharing in workers]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(10)
    # A running count of borrowing passes in flight: never two at once.
    in_flight = 0
    for step in seen:
        in_flight += step
        assert in_flight <= 1


def test_only_a_worker_on_a_share_of_the_cores_borrows(tmp_path):
    short_spin = {"GOMP_SPINCOUNT": "10000"}
    assert core_sharing_for(tmp_path, None, 2, None, short_spin) is None  # one worker: every core already
    assert core_sharing_for(tmp_path, 2, 2, True, short_spin) is None
    assert core_sharing_for(tmp_path, 1, 2, False, short_spin) is None  # loading.borrow_idle_cores: false
    assert core_sharing_for(tmp_path, 1, 2, None, {}) is None  # auto, torch's default spin
    sharing = core_sharing_for(tmp_path, 1, 2, None, short_spin)
    assert sharing is not None and sharing.lock_path == tmp_path / "cores.lock"
    sharing.close()
    with pytest.raises(ValueError, match="fewer threads"):
        CoreSharing(tmp_path / "cores.lock", 0, 2)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert core_sharing_for(blocked / "inside", 1, 2, True) is None  # no lock file: the share, not a failed load


@pytest.mark.parametrize(("environment", "spins"), [
    ({}, DEFAULT_SPIN_COUNT),
    ({"GOMP_SPINCOUNT": "10000"}, 10_000),
    ({"GOMP_SPINCOUNT": " 10k "}, 10_000),
    ({"GOMP_SPINCOUNT": "2M"}, 2_000_000),
    ({"GOMP_SPINCOUNT": "0", "OMP_WAIT_POLICY": "active"}, 0),  # the count wins over the policy
    ({"GOMP_SPINCOUNT": "INFINITE"}, ACTIVE_SPIN_COUNT),
    ({"GOMP_SPINCOUNT": "lots"}, None),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    ({"OMP_WAIT_POLICY": "active"}, ACTIVE_SPIN_COUNT),
])  # fmt: skip
def test_the_spin_count_is_read_as_libgomp_reads_it(environment, spins):
    assert openmp_spin_count(environment) == spins


def test_auto_borrows_only_where_openmp_threads_sleep_soon():
    assert borrows(None, {"GOMP_SPINCOUNT": "10000"}) and borrows(None, {"OMP_WAIT_POLICY": "passive"})
    assert not borrows(None, {}) and not borrows(None, {"GOMP_SPINCOUNT": "10001"})
    assert not borrows(None, {"GOMP_SPINCOUNT": "lots"})
    assert borrows(True, {}) and not borrows(False, {"GOMP_SPINCOUNT": "0"})  # a setting wins


def test_a_worker_of_two_borrows_for_a_lone_request_through_torchserves_context(
    sentiment_model, threads_restored, monkeypatch
):
    from support import call, explain, make_context

    from handler.torchserve_handler import TransformersLabelHandler

    torch.set_num_threads(2)
    context = make_context(sentiment_model, {"borrow_idle_cores": True})
    context.model_yaml_config.update({"minWorkers": 2, "maxWorkers": 2})
    handler = TransformersLabelHandler()
    handler.initialize(context)
    runner = handler.runner
    assert runner is not None and runner.core_sharing is not None and torch.get_num_threads() == 1
    threads_in_forward: list[int] = []
    forward_with = runner._forward_with

    def counted(*args, **kwargs):  # every pass, padded or packed, runs through it
        threads_in_forward.append(torch.get_num_threads())
        return forward_with(*args, **kwargs)

    monkeypatch.setattr(runner, "_forward_with", counted)

    lone = call(handler, context, [("application/json", {"inputs": "a fine film"})])
    assert lone[0][0] == 200 and threads_in_forward == [2] and torch.get_num_threads() == 1
    threads_in_forward.clear()
    pair = call(handler, context, [("application/json", {"inputs": "a fine film, twice"}),
                                   ("application/json", {"inputs": "a dull one"})])  # fmt: skip
    assert [status for status, _ in pair] == [200, 200] and set(threads_in_forward) == {1}

    tuner = runner.tuner
    assert tuner is not None  # packed_forward auto: the live tuner times passes against one another

    def timed_batches() -> int:
        return sum(len(samples) for samples in tuner._seconds_per_token.values())

    # A borrowed pass is faster for that reason alone: never timed.
    long_text = " ".join(["a long and winding review of a film"] * 12)
    before = timed_batches()
    assert call(handler, context, [("application/json", {"inputs": long_text})])[0][0] == 200
    assert timed_batches() == before
    call(handler, context, [("application/json", {"inputs": long_text + " again"}),
                            ("application/json", {"inputs": long_text + " and again"})])  # fmt: skip
    assert timed_batches() == before + 1

    # Only a short lone request borrows: a worker whose batch arrives meanwhile waits for its pass.
    threads_in_forward.clear()
    assert call(handler, context, [("application/json", {"inputs": "x" * (LONE_REQUEST_CHARACTERS + 1)})])[0][0] == 200
    assert threads_in_forward == [1]
    sharing = runner.core_sharing
    borrowed = sharing.borrowed_batches
    assert explain(handler, context, [{"inputs": "a fine film, explained"}])[0][0] == 200
    assert sharing.borrowed_batches == borrowed  # an explanation runs many passes: never borrowed

    off = make_context(sentiment_model, {"borrow_idle_cores": False})
    off.model_yaml_config.update({"minWorkers": 2, "maxWorkers": 2})
    kept = TransformersLabelHandler()
    kept.initialize(off)
    assert kept.runner is not None and kept.runner.core_sharing is None


def test_text_generation_keeps_its_share(lm_model, threads_restored):
    from support import make_context

    from handler.torchserve_handler import TransformersLabelHandler

    torch.set_num_threads(2)
    context = make_context(lm_model, {"borrow_idle_cores": True})
    context.model_yaml_config.update({"minWorkers": 2, "maxWorkers": 2})
    handler = TransformersLabelHandler()
    handler.initialize(context)
    assert handler.runner is not None and handler.runner.core_sharing is None and torch.get_num_threads() == 1
