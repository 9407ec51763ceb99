"""Which kernel runs the float32 linear layers on CPU: torch's own, or oneDNN over weights
reordered once at load; measured on the machine that serves (``loading.float32_linear``).

torch sends a float32 ``nn.Linear`` on CPU to its BLAS (MKL in the x86 wheels). On an AMD EPYC
Zen 5 MKL reached 110 GFLOP/s per core on 1024^3 while oneDNN reached 244 on the same core
(MiniLM end to end in float32: 283 -> 417 inputs/s); on an Intel Xeon the two were within
0.97-1.08x. So neither is assumed: auto times both on this model's own layer shapes at load and
takes oneDNN only where it is clearly faster. Both are IEEE float32 products (only the order of
the sums differs, as between any two BLAS builds); each timed shape's outputs are also compared,
and a kernel that disagrees is never used.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from handler.api.errors import ConfigurationError
from handler.api.settings import Backend, Float32Linear, HandlerSettings, Precision, Quantization

logger = logging.getLogger(__name__)

# oneDNN must be at least this much faster over the model's layers to replace torch's own kernel:
# well above the spread of a near tie (repeated loads on one CPU measure the same kernels a few
# percent apart), which would cost the reordered copies' memory for a gain the served rate never shows.
MIN_SPEEDUP = 1.2
# Rows of the timed products: a lone short input and a full packed pass.
TIMED_ROWS = (16, 512)
TIMING_ROUNDS = 3
CALLS_PER_ROUND = 4
# The largest difference allowed between the two kernels' outputs, relative to the largest output:
# float32 sums in another order differ by ~1e-6; a kernel computing in lower precision, by ~1e-3.
AGREEMENT = 1e-4


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_forward(packed: torch.Tensor, bias: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(inputs, packed, bias, "none", [], "")

    return forward


class OneDnnLinears:
    """The given float32 linear layers, each with its weight reordered for oneDNN once; while in
    use, each layer's forward calls oneDNN with it (the module and its float32 weights stay)."""

    def __init__(self, linears: Iterable[nn.Linear]) -> None:
        self.linears = list(linears)
        self._forwards = [
            _onednn_forward(torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), None), layer.bias)
            for layer in self.linears
        ]
        self.in_use = False

    def use(self, on: bool) -> None:
        if on == self.in_use:
            return
        for layer, forward in zip(self.linears, self._forwards):
            if on:
                layer.forward = forward  # an instance attribute: nn.Module calls it instead
            else:
                del layer.forward
        self.in_use = on


@dataclass(frozen=True)
class KernelChoice:
    onednn: bool
    # oneDNN's speed over torch's own on the model's layers (None: not measured).
    speedup: float | None = None
    why: str = ""

    def describe(self) -> str:
        if self.onednn:
            measured = f", {self.speedup:.2f}x torch's own kernel on this model's layers" if self.speedup else ""
            return f"float32 linear layers: oneDNN over weights reordered at load{measured}"
        return f"float32 linear layers: torch's own kernel ({self.why})"


def choose_kernel(speedup: float, agrees: bool) -> KernelChoice:
    """The pure rule: oneDNN only where its outputs agree and it is at least MIN_SPEEDUP faster."""
    if not agrees:
        return KernelChoice(False, speedup, "oneDNN's outputs differed from torch's")
    if speedup < MIN_SPEEDUP:
        return KernelChoice(False, speedup, f"oneDNN {speedup:.2f}x, needs {MIN_SPEEDUP}x")
    return KernelChoice(True, speedup)


def not_applicable(settings: HandlerSettings, device: torch.device) -> str | None:
    """Why oneDNN cannot run this model's float32 linear layers, or None where it can."""
    loading = settings.loading
    if device.type != "cpu":
        return "not a CPU"
    if loading.dtype not in (Precision.FLOAT32, Precision.AUTO):
        return f"dtype {loading.dtype.value}"
    if loading.quantization is not Quantization.NONE:
        return "quantization is set"
    if loading.torch_compile:
        return "torch_compile packs its own weights"
    if loading.backend is not Backend.TORCH:
        return f"backend {loading.backend.value}"
    if not onednn_available():
        return "this torch build has no oneDNN linear"
    return None


def _round_seconds(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> float:
    started = time.perf_counter()
    for _ in range(CALLS_PER_ROUND):
        forward(inputs)
    return time.perf_counter() - started


def measure_speedup(linears: Sequence[nn.Linear], checkpoint: Callable[[], None] = lambda: None) -> tuple[float, bool]:
    """(oneDNN's speed over torch's own kernel, summed over the layers' distinct shapes with their
    counts; whether every shape's outputs agreed). The two alternate; each keeps its fastest round.
    ``checkpoint`` is called before each shape's rounds (it raises once the load's budget is spent)."""
    shapes = Counter((layer.in_features, layer.out_features) for layer in linears)
    first = {shape: next(layer for layer in linears if (layer.in_features, layer.out_features) == shape)
             for shape in shapes}  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    torch_total = onednn_total = 0.0
    agrees = True
    with torch.inference_mode():
        for shape, count in shapes.items():
            layer = first[shape]
            onednn = _onednn_forward(torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), None), layer.bias)
            for rows in TIMED_ROWS:
                checkpoint()
                inputs = torch.randn(rows, shape[0], generator=generator)
                reference, candidate = layer(inputs), onednn(inputs)
                scale = float(reference.abs().max()) or 1.0
                agrees &= float((candidate - reference).abs().max()) <= AGREEMENT * scale
                own, other = [], []
                for _ in range(TIMING_ROUNDS):
                    own.append(_round_seconds(layer, inputs))
                    other.append(_round_seconds(onednn, inputs))
                torch_total += count * min(own)
                onednn_total += count * min(other)
    return torch_total / onednn_total, agrees


def float32_linear_kernels(
    layers: Callable[[], Sequence[nn.Linear]],
    settings: HandlerSettings,
    device: torch.device,
    measure: Callable[[Sequence[nn.Linear]], tuple[float, bool] | None] = measure_speedup,
) -> tuple[OneDnnLinears | None, KernelChoice]:
    """The oneDNN layers to swap in for float32 passes (None: torch's own kernel), and why;
    ``layers`` lists the linear layers a forward runs (asked only where oneDNN could run them);
    ``measure`` None means it was not timed (load_measurements.py): torch's own, the safe choice."""
    wanted = settings.loading.float32_linear
    if wanted is Float32Linear.TORCH:
        return None, KernelChoice(False, why="float32_linear: torch")
    reason = not_applicable(settings, device)
    linears = layers() if reason is None else []
    if reason is None and not linears:
        reason = "no linear layers"
    if reason is not None:
        if wanted is Float32Linear.ONEDNN:
            raise ConfigurationError(f"handler.loading.float32_linear onednn cannot run here: {reason}")
        return None, KernelChoice(False, why=reason)
    if wanted is Float32Linear.ONEDNN:
        return OneDnnLinears(linears), KernelChoice(True, why="float32_linear: onednn")
    measured = measure(linears)
    if measured is None:
        return None, KernelChoice(False, why="not timed: another worker was timing; the safe choice")
    choice = choose_kernel(*measured)
    return (OneDnnLinears(linears) if choice.onednn else None), choice
