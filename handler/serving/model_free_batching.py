"""Batches formed when the model is free: the handler's own queue for TorchServe's async worker mode.

Requests are queued as they arrive; one thread takes everything waiting (up to ``max_batch``
requests) the moment the previous batch is answered, and never waits for an idle queue: a lone
request runs at once, and under load a batch holds whatever arrived during the pass before it
(text-embeddings-inference's and Triton's rule with no queue delay). One exception: clients
answered a moment ago come back within a moment, so right after a batch of N is answered, fewer
than N waiting are given a short time to regroup (a tenth of the last pass, at most 5 ms, counted
from the answers; never for a request that finds the model idle). Without it a closed loop of
clients splits into cohorts that alternate in half-empty batches. Only this thread runs the
model. The queue is bounded: beyond ``max_waiting`` requests waiting or running, a new one is
refused at once (the server answers it 503), the bound TorchServe's job queue no longer gives in
this mode. A request whose waiter gave up (its deadline passed) is skipped, not run.

Nothing here knows TorchServe or torch: ``run_batch`` answers a list of items in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

# Regrouping after a batch: this share of the last pass's time, at most REGROUP_CAP_S.
REGROUP_SHARE = 0.1
REGROUP_CAP_S = 0.005

Item = TypeVar("Item")
Answer = TypeVar("Answer")


@dataclass
class Queued(Generic[Item, Answer]):
    item: Item
    answer: Future[Answer] = field(default_factory=Future)


class ModelFreeBatcher(Generic[Item, Answer]):
    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Answer]],
        max_batch: int,
        max_waiting: int,
        failed: Callable[[Item, BaseException], Answer],
        name: str = "model-free-batcher",
    ) -> None:
        if max_batch < 1 or max_waiting < 1:
            raise ValueError(f"max_batch and max_waiting must be at least 1, got {max_batch} and {max_waiting}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.failed = failed
        self._waiting: deque[Queued[Item, Answer]] = deque()
        self._running = 0
        self._ready = threading.Condition()
        self._stopped = False
        self.batches = 0
        # The last batch: its size, how long its pass took, when its answers left.
        self._last_size = 0
        self._last_pass_s = 0.0
        self._last_answered = 0.0
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Future[Answer] | None:
        """The future answer of ``item``; None when the queue is full (refuse the request)."""
        with self._ready:
            if self._stopped or len(self._waiting) + self._running >= self.max_waiting:
                return None
            queued: Queued[Item, Answer] = Queued(item)
            self._waiting.append(queued)
            self._ready.notify()
            return queued.answer

    def in_flight(self) -> int:
        with self._ready:
            return len(self._waiting) + self._running

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify_all()
        self._thread.join(timeout=5)

    def _take(self) -> list[Queued[Item, Answer]]:
        with self._ready:
            while not self._waiting and not self._stopped:
                self._ready.wait()
            deadline = self._last_answered + min(REGROUP_CAP_S, REGROUP_SHARE * self._last_pass_s)
            while len(self._waiting) < self._last_size and not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            taken: list[Queued[Item, Answer]] = []
            while self._waiting and len(taken) < self.max_batch:
                queued = self._waiting.popleft()
                # False when its waiter cancelled it (gave up at its deadline): not run.
                if queued.answer.set_running_or_notify_cancel():
                    taken.append(queued)
            self._running = len(taken)
            return taken

    def _serve(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                if self._stopped:
                    return
                continue
            started = time.monotonic()
            answers = self._answer(taken)
            # The batch leaves the count before its answers are given: a client answered at once
            # sends its next request, which must find the room its own request just left.
            with self._ready:
                self._running = 0
                self._last_size, self._last_answered = len(taken), time.monotonic()
                self._last_pass_s = self._last_answered - started
            for queued, answer in zip(taken, answers):
                queued.answer.set_result(answer)

    def _answer(self, taken: list[Queued[Item, Answer]]) -> Sequence[Answer]:
        """The answers of one batch, in its order; a failure answers each of its items."""
        self.batches += 1
        try:
            answers: Sequence[Any] = self.run_batch([queued.item for queued in taken])
            if len(answers) != len(taken):
                raise RuntimeError(f"a batch of {len(taken)} got {len(answers)} answers")
        except BaseException as error:  # noqa: BLE001 - the thread must outlive any batch
            logger.exception("a batch of %d failed", len(taken))
            answers = [self.failed(queued.item, error) for queued in taken]
        return answers
