"""What a worker times at load, done by one worker of the machine at a time and remembered.

Three choices are timed at load: the float32 linear kernel (linear_kernels.py), packed against
padded passes and the cost of a pass (pass_costs.py), and bf16 against float32 (precision.py).
Timing needs the CPU to itself. Three workers started together timed one another instead: each
measured for 25-50 s, saw its rounds disturbed and measured again, ran past TorchServe's
startupTimeout, was killed and restarted, and measured again (none ready after 240 s). So:

- **One at a time.** A worker holds a machine-wide file lock (``fcntl.flock``) while it times; the
  others wait for it, at most ``loading.measure_wait_seconds``.
- **On a quiet machine.** Holding the lock, a worker waits (within the same budget) until the
  rest of the machine is nearly idle: workers still importing torch or loading weights beside it
  once made the first of five time a pass at 17 ms + 609 us a token where alone it took 6.6 ms +
  180 us, and pick oneDNN at "1.53x" where alone it measured 1.09x.
- **Remembered.** The results are kept in a cache folder under a key made of everything they
  depend on: the model's files, the settings that change how passes run, the CPU (its model name
  and flags), the thread count, the device, and the torch and transformers versions. A restart,
  or a second worker of the same model, reads them and times nothing.
- **Bounded.** A worker that did not get the lock in time times nothing: it serves the safe choice
  (torch's own float32 kernel, padded passes at the default cut, float32 with bf16's answers
  checked) and the live tuner (live_tuning.py) corrects strategy and precision from traffic.

``HFLABELS_CACHE_DIR`` moves the folder (default ``~/.cache/hflabels``); ``HFLABELS_LOAD_CACHE=0``
turns remembering off (the lock stays). Only timings are remembered: answers (dtype auto's check
of bf16 against float32 on the probe) are computed at every load.
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

from handler.api.settings import HandlerSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Bumped when what is measured, or how, changes: older entries are then never read.
CACHE_VERSION = 1
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
    return Path(configured) if configured else Path.home() / ".cache" / "hflabels"


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
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


class LoadMeasurements:
    """The load-time timings of one model: taken under the machine's lock, or read back."""

    def __init__(
        self,
        key: str | None,
        root: Path | None,
        wait_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self.root = root
        self.wait_seconds = wait_seconds
        self.clock = clock
        self.sleep = sleep
        # Read from the cache at entry; what this load measured is added and written at exit.
        self.remembered: dict[str, Any] = {}
        self.found: dict[str, Any] = {}
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
        return cls(key, root, settings.loading.measure_wait_seconds)

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
        if self.found and self.quiet and exc[0] is None:
            self._write({**self.remembered, **self.found})

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
        value = measure()
        if trusted(value):
            self.found[name] = encode(value)
        return value

    def describe(self) -> str:
        if self.may_measure is None:
            what = "read back from the cache (timed before on this machine, model and versions)"
            return "load measurements: " + (what if self.remembered else "nothing to time")
        if not self.may_measure:
            return (f"load measurements: another worker was timing for {self.waited_seconds:.0f} s (the wait is "
                    "loading.measure_wait_seconds); serving the safe choices, corrected from live traffic")  # fmt: skip
        waited = f" after waiting {self.waited_seconds:.1f} s for the machine" if self.waited_seconds >= 0.1 else ""
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
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock = lock
                self._wait_for_quiet(started)
                self.waited_seconds = self.clock() - started
                return True
            except BlockingIOError:
                self.waited_seconds = self.clock() - started
                if self.waited_seconds >= self.wait_seconds:
                    lock.close()
                    return False
                self.sleep(POLL_SECONDS)

    def _wait_for_quiet(self, started: float) -> None:
        """Hold the lock until the other processes leave the CPUs nearly idle, within the budget;
        past it, time anyway and do not remember what was timed."""
        while True:
            busy = self.busy_share()
            if busy is None or busy <= QUIET_SHARE:
                self.quiet = True
                return
            if self.clock() - started >= self.wait_seconds:
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
