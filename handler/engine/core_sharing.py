"""Workers that share the cores: a lone request borrows the idle ones.

Several workers of one model, each on its share of the cores' threads, serve the most under load:
one worker's batch forms while another's runs (docs: performance, serving modes). But a lone
request then runs on its worker's share alone, while the other cores sit idle: on two cores, one
input of the demo MiniLM took 8.3 ms on one thread against 6.7 ms on two (bf16, AMD EPYC Zen 5).

So the workers that share the cores coordinate through one machine-wide file lock
(``fcntl.flock``; the kernel releases it if a worker dies):

- every pass of such a worker holds the lock **shared**, on the worker's own share of threads;
- a batch of **one request** first tries the lock **exclusively**, without waiting. It gets it
  only when no other sharing worker is in a pass, and then runs on every core's thread;
- a worker whose batch finds the lock held exclusively waits for that one pass to end rather than
  run beside it: threads beyond the cores preempt one another in the middle of a parallel region,
  and the whole region waits for the slowest (two workers of two threads on two cores served 69
  answers/s at 32 clients against 219 with one thread each).

When: torch's OpenMP threads (libgomp) spin about 300,000 times after a parallel region before they
sleep. A borrowing worker's second thread then keeps spinning on the borrowed core into the other
worker's next pass: measured, a lone request of two workers came 2.4 ms *further* from one worker's
by borrowing. Where the server's environment makes them sleep soon (``GOMP_SPINCOUNT=10000``) it
came 3.9 ms closer. So by default (``loading.borrow_idle_cores: auto``) a worker borrows only where
the environment it inherited says so (:func:`borrows`).

Why a batch of one request: TorchServe hands a worker a batch of one only when nothing else was
waiting, the sign of light traffic. Under load batches hold several requests and every worker keeps
its own share. And only a short one (:data:`LONE_REQUEST_CHARACTERS`, not text generation, not an
explanation): a worker whose batch arrives meanwhile waits for the borrowed pass to end, so that
pass must be short.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

LOCK_FILE = "cores.lock"
# A request whose inputs hold at most this many characters (about 500 tokens of English, one window
# of most encoders) may borrow: its pass is short, and so is the wait of a worker behind it.
LONE_REQUEST_CHARACTERS = 2048


def input_characters(inputs: Sequence[object]) -> int:
    """The size of a request's inputs in characters (texts, pairs, question and context alike)."""
    return sum(len(item) if isinstance(item, str) else len(str(item)) for item in inputs)


class CoreSharing:
    """One worker's side of the lock; ``own_threads``: its share, ``all_threads``: every core's."""

    def __init__(self, lock_path: Path, own_threads: int, all_threads: int) -> None:
        if not 1 <= own_threads < all_threads:
            raise ValueError(f"a sharing worker has fewer threads than the cores: {own_threads} of {all_threads}")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = lock_path
        self.own_threads = own_threads
        self.all_threads = all_threads
        self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        # True while a batch runs on borrowed cores; how many batches have (read by tests).
        self.borrowing = False
        self.borrowed_batches = 0

    @contextlib.contextmanager
    def pass_for(self, lone: bool) -> Iterator[int]:
        """Hold the lock around one batch's passes; ``lone``: a short batch of one request, which
        borrows the idle cores if it can. Yields the threads the passes run on."""
        self.borrowing = lone and self._try(fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not self.borrowing:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            if self.borrowing:
                self.borrowed_batches += 1
                torch.set_num_threads(self.all_threads)
                yield self.all_threads
            else:
                yield self.own_threads
        finally:
            if self.borrowing:
                torch.set_num_threads(self.own_threads)
                self.borrowing = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _try(self, operation: int) -> bool:
        try:
            fcntl.flock(self._fd, operation)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        os.close(self._fd)


# libgomp's spin count where neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY is set, and where
# OMP_WAIT_POLICY is active (its documentation: "30 billion").
DEFAULT_SPIN_COUNT = 300_000
ACTIVE_SPIN_COUNT = 30_000_000_000
# The spin count under which borrowing was measured to pay (docs: performance, serving modes): at
# 10,000 a lone request of two workers came 3.9 ms closer to one worker's; at the default it went
# 2.4 ms further, the borrowed core's spinning thread competing with the other worker's next pass.
SHORT_SPIN_COUNT = 10_000
SPIN_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def openmp_spin_count(environment: Mapping[str, str]) -> int | None:
    """How many times libgomp's idle threads spin before they sleep, as the server's environment
    sets it (GOMP_SPINCOUNT, else OMP_WAIT_POLICY); None where GOMP_SPINCOUNT cannot be read."""
    spin = environment.get("GOMP_SPINCOUNT", "").strip().lower()
    if spin:
        if spin in ("infinite", "infinity"):
            return ACTIVE_SPIN_COUNT
        multiplier = SPIN_SUFFIXES.get(spin[-1], 1)
        digits = spin[:-1] if spin[-1] in SPIN_SUFFIXES else spin
        return int(digits) * multiplier if digits.isdigit() else None
    policy = environment.get("OMP_WAIT_POLICY", "").strip().lower()
    return {"passive": 0, "active": ACTIVE_SPIN_COUNT}.get(policy, DEFAULT_SPIN_COUNT)


def borrows(setting: bool | None, environment: Mapping[str, str]) -> bool:
    """Whether a worker on a share of the cores borrows the idle ones: the setting where given;
    auto (None): where torch's OpenMP threads sleep soon after a pass."""
    if setting is not None:
        return setting
    spin = openmp_spin_count(environment)
    return spin is not None and spin <= SHORT_SPIN_COUNT


def core_sharing_for(
    lock_folder: Path, own_threads: int | None, all_threads: int, setting: bool | None,
    environment: Mapping[str, str] = os.environ,
) -> CoreSharing | None:  # fmt: skip
    """The worker's CoreSharing where it runs on a share of the cores and borrows (see borrows);
    None where it has them all (one worker, or a thread count a setting fixed) or keeps its share."""
    if own_threads is None or own_threads >= all_threads:
        return None
    if not borrows(setting, environment):
        logger.info(
            "a batch of one request keeps this worker's %d of %d threads (loading.borrow_idle_cores %s; auto "
            "borrows where GOMP_SPINCOUNT is at most %d in the server's environment)",
            own_threads, all_threads, "false" if setting is False else "auto", SHORT_SPIN_COUNT,
        )  # fmt: skip
        return None
    try:
        sharing = CoreSharing(lock_folder / LOCK_FILE, own_threads, all_threads)
    except OSError as error:
        # Borrowing is a speed-up: a folder it cannot write to never stops the model from serving.
        logger.warning("a batch of one request keeps this worker's %d threads: no lock file (%s)", own_threads, error)
        return None
    logger.info(
        "a batch of one request runs on all %d threads when no other worker sharing the cores is in a pass "
        "(loading.borrow_idle_cores)", all_threads,
    )  # fmt: skip
    return sharing
