"""Where a served run's CPU went: the load client (this process), TorchServe's frontend (the JVM)
and its model workers, per request, read from Linux's /proc around the run.

On a 2-core machine all three share the cores, so served/in-process can only be read with this
split beside it: a worker that needs 5 ms of CPU per request where the handler in-process needs 4
is the worker's own cost; a frontend or client that takes a share is theirs.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def descendants(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """``pid``'s children, their children and so on (empty where /proc cannot say)."""
    found: list[int] = []
    for children in (proc / str(pid) / "task").glob("*/children"):
        try:
            listed = children.read_text().split()
        except OSError:
            continue
        for child in map(int, listed):
            found += [child, *descendants(child, proc)]
    return found


def cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None once it is gone)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSplit:
    """CPU seconds taken during one run by the client, the frontend and the workers."""

    client: float = 0.0
    frontend: float = 0.0
    workers: float = 0.0
    wall: float = 0.0
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def plus(self, other: CpuSplit) -> CpuSplit:
        return CpuSplit(self.client + other.client, self.frontend + other.frontend, self.workers + other.workers,
                        self.wall + other.wall, self.cores)  # fmt: skip

    def per_request_ms(self, requests: int) -> dict[str, float]:
        per = 1000 / max(requests, 1)
        return {
            "client": round(self.client * per, 3),
            "frontend": round(self.frontend * per, 3),
            "workers": round(self.workers * per, 3),
            # Busy share of all cores during the run: near 1.0, the CPU itself was the limit.
            "busy_share": round((self.client + self.frontend + self.workers) / max(self.wall * self.cores, 1e-9), 3),
        }


@contextmanager
def measure_cpu(frontend_pid: int | None, clock=None) -> Iterator[CpuSplit]:
    """The split of the run inside the block (zeros for processes /proc cannot see)."""
    import time

    clock = clock or time.perf_counter
    split = CpuSplit()
    workers = descendants(frontend_pid) if frontend_pid else []
    before = {pid: cpu_seconds(pid) for pid in ([frontend_pid] if frontend_pid else []) + workers}
    client, started = own_cpu_seconds(), clock()
    yield split
    split.wall = clock() - started
    split.client = own_cpu_seconds() - client
    for pid, first in before.items():
        last = cpu_seconds(pid)
        if first is None or last is None:
            continue
        if pid == frontend_pid:
            split.frontend = last - first
        else:
            split.workers += last - first
