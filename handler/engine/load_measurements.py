"""What a worker times at load, done by one worker of the machine at a time and remembered.

Three choices are timed at load: the float32 linear kernel (linear_kernels.py), packed against
padded passes and the cost of a pass (pass_costs.py), and bf16 against float32 (precision.py).
Timing needs the CPU to itself. Three workers started together timed one another instead: each
measured for 25-50 s, saw its rounds disturbed and measured again, ran past TorchServe's
startupTimeout, was killed and restarted, and measured again (none ready after 240 s). So:

- **One at a time.** A worker holds a machine-wide file lock (``fcntl.flock``) while it times; the
  others wait for it.
- **On a quiet machine.** Holding the lock, a worker waits (within the same budget) until the
  rest of the machine is nearly idle: workers still importing torch or loading weights beside it
  once made the first of five time a pass at 17 ms + 609 us a token where alone it took 6.6 ms +
  180 us, and pick oneDNN at "1.53x" where alone it measured 1.09x.
- **Remembered.** The results are kept in a cache folder under a key made of everything they
  depend on: the model's files, the settings that change how passes run or what is served, the
  CPU (its model name and flags), the thread count, the device, and the torch and transformers
  versions. A restart, or a second worker of the same model, reads them and times nothing.
- **Bounded.** Waiting for the lock, waiting for quiet and timing share one budget,
  ``loading.measure_budget_seconds`` (30), counted from the first wait. The timers check it
  between passes (:meth:`LoadMeasurements.checkpoint`): past it, what is being timed is dropped
  and everything not yet timed serves the safe choice (torch's own float32 kernel, padded passes
  at the default cut, float32 with bf16's answers checked), which the live tuner
  (live_tuning.py) corrects from traffic. A load never loops on its timings past TorchServe's
  ``startupTimeout``.

``HFLABELS_CACHE_DIR`` (an absolute path) moves the folder (default ``~/.cache/hflabels``);
``HFLABELS_LOAD_CACHE=0`` turns remembering off (the lock stays). dtype auto's check of bf16's
answers against float32's on the probe is remembered too (:meth:`LoadMeasurements.recall`): it is
a function of the same key (the probe file and the tolerance are in it), needs no quiet machine,
and on a restart of five models it was the largest piece of work left (1.7 s of CPU a model).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from handler.api.errors import ConfigurationError
from handler.api.settings import HandlerSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Bumped when what is measured, or how, changes: older entries are then never read.
CACHE_VERSION = 3
LOCK_FILE = "load-measurements.lock"
CACHE_FOLDER = "load-measurements"
POLL_SECONDS = 0.05
# The machine counts as quiet when the other processes keep at most this share of its CPUs busy,
# sampled over QUIET_SAMPLE_SECONDS (from /proc/stat; this process is idle while it samples).
QUIET_SHARE = 0.25
QUIET_SAMPLE_SECONDS = 0.1
# Files of a model folder whose contents decide what its passes cost and what its probe says.
HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".txt", ".model")
# Weight files larger than this are keyed by size and sampled chunks, not read whole.
WHOLE_HASH_LIMIT = 512 << 20
SAMPLE_BYTES = 1 << 20


class BudgetSpent(Exception):
    """Raised by :meth:`LoadMeasurements.checkpoint` inside a timing past the load's budget."""


def _plain(value: Any) -> Any:
    """numpy scalars as the Python numbers they hold."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not a measurement")


def cpu_busy_share(sample_seconds: float = QUIET_SAMPLE_SECONDS, stat: Path = Path("/proc/stat")) -> float | None:
    """The share of the machine's CPU time spent busy over ``sample_seconds`` (None: not on Linux)."""

    def totals() -> tuple[int, int] | None:
        try:
            fields = [int(value) for value in stat.read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    before = totals()
    time.sleep(sample_seconds)
    after = totals()
    if before is None or after is None or after[0] <= before[0]:
        return None
    return 1.0 - (after[1] - before[1]) / (after[0] - before[0])


def cache_root() -> Path:
    configured = os.environ.get("HFLABELS_CACHE_DIR")
    if not configured:
        return Path.home() / ".cache" / "hflabels"
    root = Path(configured).expanduser()
    if not root.is_absolute():
        # TorchServe starts each model's worker in that model's own folder: a relative folder
        # would give every model a lock of its own, and they would time one another (seen: four
        # of five models timing at once, 47-59 s each).
        raise ConfigurationError(f"HFLABELS_CACHE_DIR must be an absolute path, not {configured!r}: each "
                                 "model's worker runs in its own folder")  # fmt: skip
    return root


def remembering() -> bool:
    return os.environ.get("HFLABELS_LOAD_CACHE", "1").lower() not in ("0", "false", "off", "no")


def _file_digest(path: Path, digest: Any) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with path.open("rb") as stream:
        if size <= WHOLE_HASH_LIMIT:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
            return
        for offset in (0, size // 2, max(0, size - SAMPLE_BYTES)):
            stream.seek(offset)
            digest.update(stream.read(SAMPLE_BYTES))


def model_digest(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix in HASHED_SUFFIXES:
            _file_digest(path, digest)
    return digest.hexdigest()


def machine_identity(device: torch.device) -> dict[str, Any]:
    import transformers

    from handler.engine.execution import cpu_flags

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            cpu = next((line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "flags": hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16],
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def measurement_key(model_dir: Path, settings: HandlerSettings, device: torch.device) -> str:
    """Everything the load-time timings depend on, as one hex digest."""
    relevant = {
        "version": CACHE_VERSION,
        "model": model_digest(model_dir),
        "machine": machine_identity(device),
        "loading": repr(settings.loading),
        "batching": repr(settings.batching),
        "max_length": settings.limits.max_length,
        # dtype auto's answer check compares classification scores as served (calibrated).
        "classification": repr(settings.classification),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


class LoadMeasurements:
    """The load-time timings of one model: taken under the machine's lock, or read back."""

    def __init__(
        self,
        key: str | None,
        root: Path | None,
        budget_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self.root = root
        self.budget_seconds = budget_seconds
        # When the budget runs out: set at the first wait (None: nothing waited or timed yet).
        self.deadline: float | None = None
        # What was being timed when the budget ran out (None: it did not).
        self.spent_on: str | None = None
        # What this load timed (the rest was read back, or not timed).
        self.timed: list[str] = []
        self._timing = False
        self.clock = clock
        self.sleep = sleep
        # Read from the cache at entry; what this load measured is added and written at exit.
        self.remembered: dict[str, Any] = {}
        self.found: dict[str, Any] = {}
        # Results (not timings) computed by this load: written whether the machine was quiet or not.
        self.results: dict[str, Any] = {}
        # Whether the machine was quiet when timing began (what is timed busy is not remembered).
        self.quiet = True
        self.busy_share: Callable[[], float | None] = cpu_busy_share
        # Whether this worker may time: None until something needs timing (then the lock is taken),
        # True once it holds the lock (or no lock could be made), False if the wait ran out.
        self.may_measure: bool | None = None
        self.waited_seconds = 0.0
        self._lock: Any = None

    @classmethod
    def for_model(cls, model_dir: Path, settings: HandlerSettings, device: torch.device) -> LoadMeasurements:
        root = cache_root()
        key = measurement_key(model_dir, settings, device) if remembering() else None
        return cls(key, root, settings.loading.measure_budget_seconds)

    @classmethod
    def unshared(cls) -> LoadMeasurements:
        """No lock and no cache: a runner built outside a server (tests, the lab's in-process runs)."""
        return cls(None, None, 0.0)

    @property
    def cache_file(self) -> Path | None:
        if self.key is None or self.root is None:
            return None
        return self.root / CACHE_FOLDER / f"{self.key}.json"

    def __enter__(self) -> LoadMeasurements:
        self.remembered = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
        found = {**self.results, **(self.found if self.quiet else {})}
        if found and exc[0] is None:
            self._write({**self.remembered, **found})

    def remember(self, name: str, measure: Callable[[], T], encode: Callable[[T], Any], decode: Callable[[Any], T],
                 trusted: Callable[[T], bool] = lambda value: True) -> T | None:  # fmt: skip
        """``name``'s result: remembered, else measured now if this worker may, else None (the
        caller serves its safe choice). A result ``trusted`` refuses (a disturbed timing) serves
        this load but is not remembered."""
        if name in self.remembered:
            try:
                return decode(self.remembered[name])
            except (KeyError, TypeError, ValueError):
                logger.info("load measurements: the cached %s could not be read; measuring it", name)
        if self.may_measure is None:
            # The lock is taken only when something must be timed: a load that reads everything
            # back, or has nothing to time, never waits.
            self.may_measure = self._acquire() if self.root is not None else True
            if self.may_measure and self.root is not None:
                # Whoever held the lock before may have timed this very model (a second worker).
                self.remembered = {**self._read(), **self.remembered}
                if name in self.remembered:
                    return self.remember(name, measure, encode, decode, trusted)
        if not self.may_measure:
            return None
        self._timing = True
        self.timed.append(name)
        try:
            value = measure()
        except BudgetSpent:
            # Nothing more is timed by this load: the rest serves its safe choices.
            self.spent_on, self.may_measure = name, False
            return None
        finally:
            self._timing = False
        if trusted(value):
            self.found[name] = encode(value)
        return value

    def recall(self, name: str, compute: Callable[[], T], encode: Callable[[T], Any], decode: Callable[[Any], T]) -> T:
        """``name``'s value, remembered or computed now: a result, not a timing (no lock, no quiet
        machine, no budget), kept with the timings under the same key."""
        if name in self.remembered:
            try:
                return decode(self.remembered[name])
            except (KeyError, TypeError, ValueError):
                logger.info("load measurements: the cached %s could not be read; computing it", name)
        value = compute()
        self.results[name] = encode(value)
        return value

    def checkpoint(self) -> None:
        """Called by the timers between passes: raises BudgetSpent once the budget is spent."""
        if self._timing and self.deadline is not None and self.clock() >= self.deadline:
            raise BudgetSpent

    def describe(self) -> str:
        if self.may_measure is None:
            what = "read back from the cache (timed before on this machine, model and versions)"
            return "load measurements: " + (what if self.remembered else "nothing to time")
        if self.spent_on is not None:
            return (f"load measurements: the budget of {self.budget_seconds:g} s (loading.measure_budget_seconds) "
                    f"ran out while timing {self.spent_on}, after {self.waited_seconds:.1f} s waiting for the machine; "
                    "what was not timed serves the safe choice, corrected from live traffic")  # fmt: skip
        if not self.may_measure:
            return (
                f"load measurements: another worker was timing for {self.waited_seconds:.0f} s (the budget is "
                "loading.measure_budget_seconds); serving the safe choices, corrected from live traffic"
            )
        waited = f" after waiting {self.waited_seconds:.1f} s for the machine" if self.waited_seconds >= 0.1 else ""
        if not self.timed:
            return f"load measurements: read back{waited}: the worker before timed this model"
        return f"load measurements: timed here{waited}" + (", the rest read back" if self.remembered else "")

    def _acquire(self) -> bool:
        assert self.root is not None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = open(self.root / LOCK_FILE, "a+")  # noqa: SIM115  (held until __exit__)
        except OSError as error:
            logger.info("load measurements: no lock (%s); timing without one", error)
            return True
        started = self.clock()
        self.deadline = started + self.budget_seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock = lock
                self._wait_for_quiet()
                self.waited_seconds = self.clock() - started
                return True
            except BlockingIOError:
                self.waited_seconds = self.clock() - started
                if self.clock() >= self.deadline:
                    lock.close()
                    return False
                self.sleep(POLL_SECONDS)

    def _wait_for_quiet(self) -> None:
        """Hold the lock until the other processes leave the CPUs nearly idle, within half what is
        left of the budget (the rest is for timing); past it, time anyway and do not remember what
        was timed."""
        assert self.deadline is not None
        give_up = self.clock() + (self.deadline - self.clock()) / 2
        while True:
            busy = self.busy_share()
            if busy is None or busy <= QUIET_SHARE:
                self.quiet = True
                return
            if self.clock() >= give_up:
                self.quiet = False
                logger.info("load measurements: the machine stayed busy (%.0f%% of its CPUs); timing anyway, "
                            "not remembering it", busy * 100)  # fmt: skip
                return
            self.sleep(POLL_SECONDS)

    def _read(self) -> dict[str, Any]:
        path = self.cache_file
        if path is None or not path.is_file():
            return {}
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def _write(self, found: Mapping[str, Any]) -> None:
        path = self.cache_file
        if path is None:
            return
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole, then renamed: a reader never sees half a file.
            with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as stream:
                json.dump(found, stream, default=_plain)
            os.replace(stream.name, path)
