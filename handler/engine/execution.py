"""How every forward pass runs, decided once at load: the one place a precision is added.

An :class:`ExecutionPolicy` is a frozen value: the device, the dtype the weights were loaded in,
an autocast dtype (None: none), and for encoders whether passes run padding-free and the fixed
cost of a padded pass. Every forward of every task (padded, packed, ``generate``, explanations)
runs inside :meth:`ExecutionPolicy.forward_context`, and every output leaves through
:meth:`ExecutionPolicy.to_numpy`, so scores are computed from float32 whatever ran the model.

:func:`measure_execution` is the load-time measurement of packed against padded passes (the choice
itself is the pure :func:`handler.engine.pass_costs.choose_execution`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from handler.api.errors import ConfigurationError
from handler.api.settings import HandlerSettings, Precision
from handler.engine.linear_kernels import OneDnnLinears
from handler.engine.pass_costs import ExecutionChoice, PassTimer, choose_execution
from handler.engine.weight_copies import WeightCopies

logger = logging.getLogger(__name__)

# batch_overhead_tokens for runners that do not measure it (text generation, torch_compile).
DEFAULT_OVERHEAD_TOKENS = 32
# Seconds to let a busy CPU settle before timing the passes a second time.
REMEASURE_PAUSE_SECONDS = 1.0

WEIGHT_DTYPES = {
    Precision.FLOAT32: torch.float32,
    Precision.FLOAT16: torch.float16,
    Precision.BFLOAT16: torch.bfloat16,
    # float32 weights; bf16 autocast is chosen at load (handler/engine/precision.py).
    Precision.AUTO: torch.float32,
}


@dataclass(frozen=True)
class ExecutionPolicy:
    device: torch.device
    # The dtype the weights are loaded in (handler.dtype).
    weight_dtype: torch.dtype = torch.float32
    # Autocast's dtype around every forward; None runs each layer in its weights' dtype.
    autocast_dtype: torch.dtype | None = None
    # Encoders: padding-free passes (handler/engine/packed_encoder.py) where the model has them.
    packed: bool = False
    # A padded pass's fixed cost in tokens' worth of compute (handler/engine/batching.py).
    batch_overhead_tokens: int = DEFAULT_OVERHEAD_TOKENS
    # What was measured at load to choose packed and batch_overhead_tokens; None if nothing was.
    measured: ExecutionChoice | None = None
    # dtype auto: the linear layers' weights in the autocast dtype, swapped in for autocast passes
    # (handler/engine/weight_copies.py); None: autocast casts them on each call.
    weight_copies: WeightCopies | None = field(default=None, compare=False, repr=False)
    # CPU: oneDNN runs the float32 linear layers where it measured faster at load
    # (handler/engine/linear_kernels.py); None: torch's own kernel.
    float32_linears: OneDnnLinears | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: HandlerSettings, device: torch.device) -> ExecutionPolicy:
        weight_dtype = WEIGHT_DTYPES[settings.loading.dtype]
        if device.type == "cpu" and weight_dtype is torch.float16:
            raise ConfigurationError("handler.dtype float16 needs a GPU; use float32 or bfloat16 on CPU")
        overhead = settings.batching.batch_overhead_tokens
        return cls(
            device=device,
            weight_dtype=weight_dtype,
            packed=bool(settings.batching.packed_forward),
            batch_overhead_tokens=overhead if overhead is not None else DEFAULT_OVERHEAD_TOKENS,
        )

    @contextlib.contextmanager
    def forward_context(self, gradients: bool = False) -> Iterator[None]:
        """What every forward pass runs in: no autograd (unless ``gradients``), and autocast if set."""
        if self.weight_copies is not None:
            self.weight_copies.use(self.autocast_dtype == self.weight_copies.dtype)
        if self.float32_linears is not None:
            # oneDNN's linear has no backward: gradients (explanations) take torch's own kernel.
            self.float32_linears.use(self.autocast_dtype is None and not gradients)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad() if gradients else torch.inference_mode())
            # A pass without autocast runs without it even inside another policy's context (a
            # benchmark timing the handler inside the model's own): its layers may be float32-only.
            enabled = self.autocast_dtype is not None
            stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=enabled))
            yield

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """An input array (token ids, masks) on the serving device."""
        return torch.from_numpy(array).to(self.device)

    @staticmethod
    def to_numpy(tensor: torch.Tensor) -> np.ndarray:
        """A model output as float32 numpy: scores are computed from it in one precision."""
        return tensor.detach().float().cpu().numpy()

    def describe(self) -> str:
        precision = str(self.weight_dtype).removeprefix("torch.")
        if self.autocast_dtype is not None:
            precision += f", autocast {str(self.autocast_dtype).removeprefix('torch.')}"
        if self.float32_linears is not None:
            precision += ", float32 linear layers on oneDNN"
        return f"{self.device}, {precision}"


# CPU flags (Linux /proc/cpuinfo) of units that run bf16 matrix products natively: Intel AMX and
# AVX512_BF16 (Intel Cooper Lake and later, AMD Zen 4 and later); Arm's BF16 extension.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The processor's feature flags, as Linux reports them (empty where it does not)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as stream:
                cpuinfo = stream.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def fast_bfloat16(device: torch.device, flags: frozenset[str] | None = None) -> str | None:
    """Why bf16 would run fast on ``device`` (the unit found), or None where it would not: a CUDA
    GPU that supports bf16, or a CPU with one of BF16_CPU_FLAGS. Detected, never assumed."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device) if torch.cuda.is_bf16_supported() else None
    found = [flag for flag in BF16_CPU_FLAGS if flag in (cpu_flags() if flags is None else flags)]
    return ", ".join(found) or None


def fast_low_precision(device: torch.device) -> str | None:
    """The unit that makes dtype auto's candidate fast on ``device``: bf16 units on a CPU, a
    CUDA GPU's fp16 (every CUDA GPU torch supports has it); None where there is none."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return fast_bfloat16(device)


def measure_execution(
    policy: ExecutionPolicy,
    settings: HandlerSettings,
    padded_timer: PassTimer,
    packed_timer: PassTimer | None,
    max_length: int,
    sleep: Callable[[float], None] = time.sleep,
    remember: Callable[[Callable[[], ExecutionChoice]], ExecutionChoice | None] | None = None,
) -> ExecutionPolicy:
    """``policy`` with packed passes and batch_overhead_tokens as measured (or configured) at load.

    A measurement disturbed by another process is taken once more, after a pause; one still
    disturbed serves, with a WARNING saying how to pin the choice. ``remember`` (load_measurements.py)
    reads a choice measured before, or measures under the machine's lock, or gives None: then
    padded passes at the default cut serve (the live tuner explores packed ones)."""
    overhead = settings.batching.batch_overhead_tokens
    if settings.loading.torch_compile and overhead is None:
        # A compiled forward recompiles for each new shape: timing many shapes would be slow.
        overhead = DEFAULT_OVERHEAD_TOKENS

    def measure() -> ExecutionChoice:
        return choose_execution(
            padded_timer,
            packed_timer,
            settings.batching.micro_batch_size,
            max_length,
            overhead,
            settings.batching.packed_forward,
            time.perf_counter,
        )

    def settled() -> ExecutionChoice:
        choice = measure()
        if choice.disturbed:
            logger.info("forward passes: measuring again, the first try was disturbed: %s", choice.describe())
            sleep(REMEASURE_PAUSE_SECONDS)
            choice = measure()
        return choice

    found = remember(settled) if remember is not None else settled()
    if found is None:
        packed = settings.batching.packed_forward
        cut = overhead if overhead is not None else DEFAULT_OVERHEAD_TOKENS
        choice = ExecutionChoice(packed=bool(packed), batch_overhead_tokens=cut)
        way = "padding-free" if packed else "padded"
        logger.info("forward passes: %s passes, batch_overhead_tokens %d (not timed: another worker was "
                    "timing; the safe choice, corrected from traffic)", way, cut)  # fmt: skip
    else:
        choice = found
        log = logger.warning if choice.disturbed else logger.info
        log("forward passes: %s", choice.describe())
    return replace(
        policy,
        packed=choice.packed and packed_timer is not None,
        batch_overhead_tokens=choice.batch_overhead_tokens,
        measured=choice,
    )


def pass_timer(run: Callable[[Sequence[int]], object], checkpoint: Callable[[], None] = lambda: None) -> PassTimer:
    """Seconds ``run(lengths)`` takes, as choose_execution times a pass; ``checkpoint`` is called
    before each pass (it raises once the load's budget is spent: load_measurements.py)."""

    def time_pass(lengths: Sequence[int]) -> float:
        checkpoint()
        started = time.perf_counter()
        run(lengths)
        return time.perf_counter() - started

    return time_pass
