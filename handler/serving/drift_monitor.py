"""Drift tested off the request path: windows of answers handed to a thread of their own.

The batch thread only counts each answer into the current window (handler/postprocess/monitoring.py
``DriftWindow``); a completed window goes to a daemon thread that runs its tests (the input test
is a permutation test: tens of milliseconds on a CPU) and keeps the latest reading, which the
next batch reports as gauges. Memory is bounded: one window being filled, at most one waiting,
one being tested. A window that completes while one is still waiting is dropped and counted
(``DriftWindowsSkippedTotal``), so a burst never queues work.

The tests must not take the CPU from the passes. Served at 32 clients on 2 cores, the monitor once
cost 10.5% of the throughput (194.8 against 217.6 answers/s, 1.2 ms more worker CPU an answer)
where the tests themselves take 50-70 ms of CPU a window of 200 (0.3 ms an answer): numpy's
OpenBLAS ran each product on two threads, and its extra thread spins for a while after each call
before it sleeps. So the tests run on one BLAS thread, and the thread runs at the lowest priority
(Linux: nice 19 for this thread alone), so the scheduler gives the passes' threads the cores first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from handler.api.errors import ConfigurationError
from handler.api.settings import DriftReference, MonitoringSettings
from handler.postprocess.monitoring import (
    AlarmState,
    CompletedWindow,
    DriftReading,
    DriftWindow,
    ReferenceSample,
    window_tests,
)
from handler.serving.shared_drift import PoolFiles, SharedAlarmState, SharedDriftWindow

logger = logging.getLogger(__name__)

# The drift tests' thread yields the cores to everything else in the worker.
BACKGROUND_NICENESS = 19


def reference_sample(reference: DriftReference, labels: tuple[str, ...], model_dir: Path | None,
                     hidden_size: int | None) -> ReferenceSample:  # fmt: skip
    """The reference as arrays; the input representations read from the model folder and checked
    (shape, finiteness) so that a bad file fails the load, naming it."""
    label_shares = np.array([reference.labels.get(label, 0.0) for label in labels], dtype=np.float64)
    confidence = np.array(reference.confidence, dtype=np.float64)
    examples = reference.examples or 0
    if examples <= 0:
        raise ConfigurationError("handler.monitoring.reference.examples is needed for the drift tests")
    inputs = reference.inputs
    if inputs is None:
        return ReferenceSample(label_shares, confidence, examples)
    path = (model_dir or Path(".")) / inputs.file
    try:
        representations = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        where = f"handler.monitoring.reference.inputs.file {inputs.file}"
        raise ConfigurationError(f"{where}: cannot read it ({error})") from None
    expected = (inputs.examples, hidden_size) if hidden_size else (inputs.examples, representations.shape[-1])
    if representations.ndim != 2 or representations.shape != expected:
        raise ConfigurationError(
            f"handler.monitoring.reference.inputs.file {inputs.file} holds an array of shape "
            f"{representations.shape}, expected {expected} (examples, the model's hidden size): was it written "
            "for this model?"
        )
    if not np.isfinite(representations).all():
        raise ConfigurationError(f"handler.monitoring.reference.inputs.file {inputs.file} holds non-finite values")
    return ReferenceSample(label_shares, confidence, examples, representations.astype(np.float32), inputs.bandwidth)


class DriftMonitor:
    """Windows of answers, tested in a background thread against the reference."""

    def __init__(self, labels: int, reference: ReferenceSample, settings: MonitoringSettings,
                 shared_folder: Path | None = None) -> None:  # fmt: skip
        """``shared_folder``: where the workers of this model pool their answers into common windows
        (handler/serving/shared_drift.py); None: this worker's answers alone."""
        self.reference, self.settings = reference, settings
        with_representations = reference.representations is not None
        self.window: DriftWindow | SharedDriftWindow
        self.alarm: AlarmState | SharedAlarmState
        self.shared: PoolFiles | None = None
        if shared_folder is None:
            self.window = DriftWindow(settings.drift_window, labels, with_representations)
            self.alarm = AlarmState(settings.drift_clear_windows)
        else:
            self.shared = PoolFiles(shared_folder)
            hidden = reference.representations.shape[1] if reference.representations is not None else None
            self.window = SharedDriftWindow(self.shared, settings.drift_window, labels, hidden)
            self.alarm = SharedAlarmState(self.shared, settings.drift_clear_windows)
        # Counted for the metrics' counters, which TorchServe sums over workers (gauges it does not).
        self.skipped = 0
        self.tested_windows = 0
        self.rejected_windows = 0
        # Each window with its number (None: this worker's own count), or None to stop.
        self._pending: queue.Queue[tuple[int | None, CompletedWindow] | None] = queue.Queue(maxsize=1)
        self._warned_pool = False
        self._lock = threading.Lock()
        self._latest: dict[str, float] | None = None
        self._thread = threading.Thread(target=self._test_windows, name="drift-tests", daemon=True)
        self._thread.start()

    @property
    def wants_representations(self) -> bool:
        return self.reference.representations is not None

    def add(self, label: int, confidence: float, representation: np.ndarray | None) -> None:
        done = self.window.add(label, confidence, representation)
        if done is not None:
            self._hand_over(None, done)

    def end_batch(self) -> None:
        """After a batch's answers: shared windows take them into the pool, once a batch."""
        if not isinstance(self.window, SharedDriftWindow):
            return
        try:
            completed = self.window.flush()
        except OSError as error:
            # Monitoring never fails a request: the batch's answers are left out of the windows.
            if not self._warned_pool:
                logger.warning("drift windows: cannot write the shared pool (%s); answers left out", error)
                self._warned_pool = True
            return
        for number, window in completed:
            self._hand_over(number, window)

    def _hand_over(self, number: int | None, window: CompletedWindow) -> None:
        try:
            self._pending.put_nowait((number, window))
        except queue.Full:
            self.skipped += 1

    def take_gauges(self) -> dict[str, float] | None:
        """The gauges of the latest tested window, once each (None when nothing new was tested)."""
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until every handed-over window is tested (tests and tools; never on the request path)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._pending.join(), done.set()), daemon=True).start()
        return done.wait(timeout)

    def _test_windows(self) -> None:
        if sys.platform.startswith("linux"):
            # Linux gives each thread its own nice value (PRIO_PROCESS with a thread's id).
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
        blas = ThreadpoolController()
        while True:
            handed = self._pending.get()
            try:
                if handed is None:
                    return
                number, window = handed
                with blas.limit(limits=1, user_api="blas"):
                    reading = self._test(window, number)
                self._record(reading)
            except Exception:
                logger.warning("drift tests failed on a window", exc_info=True)
            finally:
                self._pending.task_done()

    def _test(self, window: CompletedWindow, number: int | None = None) -> DriftReading:
        # Each window's permutations from a seed of its own: its number, counting from 1 (across
        # the workers where they share windows).
        seed = self.tested_windows + 1 if number is None else number
        return window_tests(window, self.reference, self.settings.drift_level, self.settings.drift_permutations,
                            seed=seed)  # fmt: skip

    def _record(self, reading: DriftReading) -> None:
        rejected = reading.rejected()
        self.rejected_windows += int(rejected)
        self.tested_windows += 1
        if self.alarm.update(rejected):
            logger.warning(
                "drift alarm %s after a window of %d answers: %s",
                "raised" if self.alarm.raised else f"cleared ({self.settings.drift_clear_windows} quiet windows)",
                self.settings.drift_window, reading.describe(),
            )  # fmt: skip
        gauges = reading.gauges()
        gauges["DriftAlarm"] = int(self.alarm.raised)
        with self._lock:
            self._latest = gauges
