"""Drift windows shared by a model's workers (handler/serving/shared_drift.py): every answer counts
once, whichever worker gave it, and each window is tested once."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from handler.postprocess.monitoring import DriftWindow, confidence_bucket
from handler.serving.shared_drift import (
    DRIFT_FOLDER,
    STATE_FILE,
    PoolFiles,
    SharedAlarmState,
    SharedDriftWindow,
    pool_folder_for,
    shared_drift_folder,
)

HIDDEN = 4
# Enough appends that three workers' overlap (without the lock this test failed 5 runs of 5)
BATCHES = 1000


def answers(count: int, seed: int) -> list[tuple[int, float, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(3)), float(rng.uniform(0.3, 1.0)), rng.normal(size=HIDDEN).astype(np.float32))
            for _ in range(count)]  # fmt: skip


def test_two_workers_fill_the_windows_one_worker_would_fill_from_the_same_answers(tmp_path):
    size = 10
    workers = [SharedDriftWindow(PoolFiles(tmp_path), size, 3, HIDDEN) for _ in range(2)]
    alone = DriftWindow(size, 3, representations=True)
    expected, completed = [], []
    for batch in range(9):
        worker = workers[batch % 2]
        for answer in answers(batch + 3, seed=batch):  # batches of 3 to 11: windows end mid-batch
            worker.add(*answer)
            done = alone.add(*answer)
            if done is not None:
                expected.append(done)
        completed += worker.flush()
    assert [number for number, _ in completed] == list(range(1, len(expected) + 1)) and len(expected) == 6
    for (_, window), reference in zip(completed, expected):
        assert np.array_equal(window.label_counts, reference.label_counts)
        assert np.array_equal(window.bucket_counts, reference.bucket_counts)
        assert np.array_equal(window.representations, reference.representations)
    assert os.path.getsize(tmp_path / "pool.bin") == alone.count * workers[0].record.itemsize  # the rest waits


def test_an_answer_without_a_representation_leaves_the_input_test_out_as_one_worker_does(tmp_path):
    window = SharedDriftWindow(PoolFiles(tmp_path), 3, 3, HIDDEN)
    window.add(0, 0.9, np.ones(HIDDEN))
    window.add(1, 0.55, None)
    window.add(1, 0.97, np.ones(HIDDEN))
    [(number, done)] = window.flush()
    assert number == 1 and done.representations is None
    assert done.label_counts.tolist() == [1, 2, 0]
    assert done.bucket_counts[confidence_bucket(0.55)] == 1 and done.bucket_counts.sum() == 3


def test_outputs_only_windows_carry_no_representations(tmp_path):
    window = SharedDriftWindow(PoolFiles(tmp_path), 2, 2, None)
    for label in (0, 1, 1, 1):
        window.add(label, 0.99, None)
    assert [(number, done.label_counts.tolist(), done.representations) for number, done in window.flush()] == [
        (1, [1, 1], None), (2, [0, 2], None)]  # fmt: skip


def test_stray_bytes_in_the_pool_are_dropped_with_a_warning(tmp_path, caplog):
    (tmp_path / "pool.bin").write_bytes(b"\x01\x02\x03")
    window = SharedDriftWindow(PoolFiles(tmp_path), 2, 2, None)
    window.add(0, 0.9, None)
    window.add(1, 0.9, None)
    [(_, done)] = window.flush()
    assert done.label_counts.tolist() == [1, 1] and "stray bytes" in caplog.text


def _append_from_a_process(folder: str, batches: int, seed: int, start, results) -> None:
    window = SharedDriftWindow(PoolFiles(Path(folder)), 25, 3, HIDDEN)
    prepared = [answers(7, seed * 1000 + batch) for batch in range(batches)]
    taken = []
    start.wait()
    for batch in prepared:
        for label, confidence, representation in batch:
            window.add(label, confidence, representation)
        taken += [(number, done.label_counts.tolist()) for number, done in window.flush()]
    results.put(taken)


def test_workers_appending_at_once_lose_no_answer_and_test_no_window_twice(tmp_path):
    spawn = multiprocessing.get_context("spawn")
    results, start = spawn.Queue(), spawn.Event()
    processes = [spawn.Process(target=_append_from_a_process, args=(str(tmp_path), BATCHES, seed, start, results))
                 for seed in range(3)]  # fmt: skip
    for process in processes:
        process.start()
    start.set()  # all at once, so that their appends interleave
    taken = [window for _ in processes for window in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=60)
    total = 3 * BATCHES * 7
    numbers = sorted(number for number, _ in taken)
    assert numbers == list(range(1, total // 25 + 1))
    assert all(sum(counts) == 25 for _, counts in taken)
    record = SharedDriftWindow(PoolFiles(tmp_path), 25, 3, HIDDEN).record
    left = os.path.getsize(tmp_path / "pool.bin") // record.itemsize
    assert left == total % 25
    assert json.loads((tmp_path / STATE_FILE).read_text())["windows"] == total // 25


def test_an_alarm_raised_by_one_worker_is_cleared_by_the_others_quiet_windows(tmp_path):
    first, second = SharedAlarmState(PoolFiles(tmp_path), 2), SharedAlarmState(PoolFiles(tmp_path), 2)
    assert first.update(rejected=True) and first.raised
    assert not second.update(rejected=False) and second.raised  # one quiet window: still raised
    assert first.update(rejected=False) and not first.raised  # the second quiet window, whichever worker
    assert not SharedAlarmState(PoolFiles(tmp_path), 2).raised  # a restarted worker reads the state


def test_one_folder_per_server_and_model_and_the_folders_of_exited_servers_are_removed(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    manifest = {"model": {"modelName": "m", "modelVersion": "1.0"}}
    assert pool_folder_for(tmp_path, model_dir, manifest, workers=1) is None
    folder = pool_folder_for(tmp_path, model_dir, manifest, workers=2)
    assert folder is not None and folder.is_dir() and folder.name.startswith(f"{os.getppid()}-")
    assert pool_folder_for(tmp_path, model_dir, manifest, workers=2) == folder
    other_version = pool_folder_for(tmp_path, model_dir, {"model": {"modelName": "m", "modelVersion": "2.0"}}, 2)
    assert other_version != folder
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(exited.stdout)
    stale = shared_drift_folder(tmp_path, model_dir, "m", "1.0", server_pid=dead_pid)
    assert stale.is_dir()
    pool_folder_for(tmp_path, model_dir, manifest, workers=2)
    assert not stale.exists() and folder.is_dir()
    assert sorted(path.name.partition("-")[0] for path in (tmp_path / DRIFT_FOLDER).iterdir()) == [
        str(os.getppid())] * 2  # fmt: skip


def test_a_folder_that_cannot_be_made_leaves_the_windows_per_worker(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert pool_folder_for(blocked, tmp_path, {}, workers=2) is None
    assert "drift windows stay per worker" in caplog.text


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_two_handlers_of_one_model_test_one_window_of_both_their_answers(sentiment_model, threads_restored):
    """Two workers through TorchServe's Context, each answering half: the window of 12 is complete
    when both have answered 6, and its gauges are those of all 12 answers."""
    from support import call_one, make_context
    from test_handler_guarantees import TEXTS, reference_for, scores_of

    from handler.postprocess.monitoring import population_stability_index, shares
    from handler.torchserve_handler import TransformersLabelHandler

    settings = {"monitoring": {"drift_window": 12, "reference": reference_for([1.0, 0.0, 0.0], [1.0] + [0.0] * 7)}}
    workers = []
    for _ in range(2):
        context = make_context(sentiment_model, settings, name="shared-drift-model")
        context.model_yaml_config.update({"minWorkers": 2, "maxWorkers": 2})
        handler = TransformersLabelHandler()
        handler.initialize(context)
        workers.append((handler, context))
    monitors = [handler.serving_metrics.monitor.drift_monitor for handler, _ in workers]
    assert all(monitor.shared is not None for monitor in monitors)
    assert monitors[0].shared.folder == monitors[1].shared.folder
    first = scores_of(*workers[0], TEXTS + TEXTS[:2])  # 6 answers: half a window
    assert monitors[0].wait_idle() and monitors[0].tested_windows == 0
    second = scores_of(*workers[1], TEXTS[1:] + TEXTS[:3])  # 6 more: the window, tested by this worker
    assert monitors[1].wait_idle() and (monitors[0].tested_windows, monitors[1].tested_windows) == (0, 1)
    gauges = monitors[1].take_gauges()
    labels = np.bincount(np.concatenate([first.argmax(axis=1), second.argmax(axis=1)]), minlength=3)
    assert gauges["DriftLabelPSI"] == pytest.approx(population_stability_index(shares(labels), [1.0, 0.0, 0.0]))
    assert gauges["DriftAlarm"] == int(monitors[1].alarm.raised)
    state = json.loads((monitors[0].shared.folder / STATE_FILE).read_text())
    assert state["windows"] == 1 and state["raised"] == gauges["DriftAlarm"]
    assert call_one(*workers[0], {"inputs": TEXTS[0]})[0] == 200
