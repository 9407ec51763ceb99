"""Drift windows shared by the workers of one model: every answer counts, whichever worker gave it.

With one worker, a window of ``drift_window`` answers fills from all the traffic. With two, each
worker used to fill its own window from the half it answers: a window took twice as long, and the
shifted traffic of the end-to-end drift tests never completed one in time. So the workers of one
model pool their answers in files of their own (``POOL_FILE``, ``STATE_FILE``), under a lock:

- each worker keeps its batch's answers in memory and, once per batch, appends them to the pool
  (one ``flock`` and one write a batch: tens of microseconds against a pass of milliseconds);
- the worker whose append brings the pool to a full window takes the oldest ``drift_window``
  answers off it and tests them in its own background thread, so each window is tested once;
- windows are numbered across the workers (the number seeds the permutation test), and the alarm's
  state (raised, quiet windows) is read and written under the same lock, so a window tested by one
  worker clears or raises the alarm another raised.

The folder is one per server and model: the frontend's process id (the workers' parent), the
unpacked model folder, name and version. A new server starts new windows; a worker that restarts
rejoins its model's pool. Folders of servers that have exited are removed at load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from handler.postprocess.monitoring import CONFIDENCE_EDGES, AlarmState, CompletedWindow, confidence_bucket

logger = logging.getLogger(__name__)

DRIFT_FOLDER = "drift"
POOL_FILE = "pool.bin"
STATE_FILE = "state.json"


def shared_drift_folder(root: Path, model_dir: Path, name: str, version: str, server_pid: int | None = None) -> Path:
    """The pool folder of this model in this server (``server_pid``: the frontend, the workers'
    parent); folders left by servers that are no longer running are removed first."""
    server_pid = os.getppid() if server_pid is None else server_pid
    pools = root / DRIFT_FOLDER
    remove_exited_servers(pools)
    key = hashlib.sha256(f"{model_dir.resolve()}\0{name}\0{version}".encode()).hexdigest()[:16]
    folder = pools / f"{server_pid}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pool_folder_for(root: Path, model_dir: Path, manifest: object, workers: int) -> Path | None:
    """Where this worker pools its drift answers with the model's other workers; None with one
    worker, or where the folder cannot be made (each worker then fills windows of its own, as the
    warning says: monitoring never fails a load)."""
    if workers <= 1:
        return None
    model = manifest.get("model", {}) if isinstance(manifest, dict) else {}
    name, version = str(model.get("modelName", model_dir.name)), str(model.get("modelVersion", ""))
    try:
        return shared_drift_folder(root, model_dir, name, version)
    except OSError as error:
        logger.warning("drift windows stay per worker: cannot make the shared folder under %s (%s)", root, error)
        return None


def remove_exited_servers(pools: Path) -> None:
    if not pools.is_dir():
        return
    for folder in pools.iterdir():
        pid = folder.name.partition("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_type(hidden_size: int | None) -> np.dtype:
    """One answer in the pool: top label, confidence bucket and, when inputs are tested, whether the
    pass kept a representation and the representation itself."""
    fields: list[tuple] = [("label", "<i4"), ("bucket", "<i4")]
    if hidden_size is not None:
        fields += [("has_representation", "u1"), ("representation", "<f4", (hidden_size,))]
    return np.dtype(fields)


class PoolFiles:
    """The pool and state files of one folder, locked across workers (flock) and across this
    worker's threads (a flock is held per open file, so two threads of one worker would both get it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd = os.open(folder / POOL_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        self._threads = threading.Lock()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._threads:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def read_state(self) -> dict[str, int]:
        """Under the lock: windows numbered so far, the alarm raised (0/1), quiet windows since."""
        try:
            state = json.loads((self.folder / STATE_FILE).read_text())
            return {key: int(state[key]) for key in ("windows", "raised", "quiet")}
        except (OSError, ValueError, KeyError, TypeError):
            return {"windows": 0, "raised": 0, "quiet": 0}

    def write_state(self, state: dict[str, int]) -> None:
        """Under the lock; a new file renamed over the old, so that a worker killed mid-write leaves
        the previous state, not half of one."""
        temporary = self.folder / f"{STATE_FILE}.{os.getpid()}"
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.folder / STATE_FILE)

    def close(self) -> None:
        os.close(self.fd)


class SharedDriftWindow:
    """``DriftWindow``'s counting over the pool: ``add`` keeps an answer in memory, ``flush`` (once a
    batch) appends them and returns the windows this worker completed, with their numbers."""

    def __init__(self, files: PoolFiles, size: int, labels: int, hidden_size: int | None) -> None:
        self.files, self.size, self.labels = files, size, labels
        self.with_representations = hidden_size is not None
        self.record = record_type(hidden_size)
        self._answers: list[tuple[int, int, np.ndarray | None]] = []

    def add(self, label: int, confidence: float, representation: np.ndarray | None) -> None:
        self._answers.append((label, confidence_bucket(confidence), representation))

    def flush(self) -> list[tuple[int, CompletedWindow]]:
        if not self._answers:
            return []
        records = self._records()
        with self.files.locked():
            fd = self.files.fd
            held = os.fstat(fd).st_size
            if held % self.record.itemsize:
                # Not whole records: written by another layout (never by this model's workers).
                logger.warning("drift pool %s held %d stray bytes; started afresh", self.files.folder, held)
                os.ftruncate(fd, 0)
                held = 0
            os.pwrite(fd, records.tobytes(), held)
            total = held // self.record.itemsize + len(records)
            if total < self.size:
                return []
            pooled = np.frombuffer(os.pread(fd, total * self.record.itemsize, 0), dtype=self.record)
            whole = total // self.size * self.size
            os.ftruncate(fd, 0)
            os.pwrite(fd, pooled[whole:].tobytes(), 0)
            state = self.files.read_state()
            first = state["windows"] + 1
            state["windows"] += whole // self.size
            self.files.write_state(state)
        return [(first + index, self._window(pooled[start : start + self.size]))
                for index, start in enumerate(range(0, whole, self.size))]  # fmt: skip

    def _records(self) -> np.ndarray:
        answers, self._answers = self._answers, []
        records = np.zeros(len(answers), dtype=self.record)
        records["label"] = [label for label, _, _ in answers]
        records["bucket"] = [bucket for _, bucket, _ in answers]
        if self.with_representations:
            for index, (_, _, representation) in enumerate(answers):
                if representation is not None:
                    records["has_representation"][index] = 1
                    records["representation"][index] = representation
        return records

    def _window(self, records: np.ndarray) -> CompletedWindow:
        label_counts = np.bincount(records["label"], minlength=self.labels).astype(np.int64)
        bucket_counts = np.bincount(records["bucket"], minlength=len(CONFIDENCE_EDGES) - 1).astype(np.int64)
        # As in DriftWindow: an answer without a representation leaves the input test out.
        complete = self.with_representations and bool(records["has_representation"].all())
        representations = np.array(records["representation"], dtype=np.float32) if complete else None
        return CompletedWindow(label_counts, bucket_counts, representations)


class SharedAlarmState:
    """``AlarmState`` whose raised flag and quiet count live in the pool's state file."""

    def __init__(self, files: PoolFiles, clear_windows: int) -> None:
        self.files, self.clear_windows = files, clear_windows
        with files.locked():
            self.raised = bool(files.read_state()["raised"])

    def update(self, rejected: bool) -> bool:
        with self.files.locked():
            state = self.files.read_state()
            alarm = AlarmState(self.clear_windows)
            alarm.raised, alarm.quiet = bool(state["raised"]), state["quiet"]
            changed = alarm.update(rejected)
            state["raised"], state["quiet"] = int(alarm.raised), alarm.quiet
            self.files.write_state(state)
        self.raised = alarm.raised
        return changed
