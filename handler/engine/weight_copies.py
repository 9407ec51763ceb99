"""Low-precision copies of the linear layers' weights, made once at load for dtype auto.

Under bf16 autocast every linear layer casts its float32 weight to bf16 on every call; for a pass
of one short input that cast is most of the work (movie MiniLM, one 9-word input, Intel Xeon with
AMX: float32 6.66 ms, bf16 autocast 9.86 ms). With a bf16 copy of each weight and bias in place,
autocast has nothing to cast (a tensor already in the target dtype passes through), and the
products are the same bits as before: autocast's cast of the float32 weight is this cast. The
float32 weights stay, so float32 passes (the probe's reference, live exploration, a switch back)
run exactly as before; the execution policy swaps the two sets in its forward context.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def own_linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The model's linear layers whose weights no other kind of module shares (a weight tied to an
    embedding must stay float32 for the lookup)."""
    shared = {id(parameter) for module in model.modules() if not isinstance(module, nn.Linear)
              for parameter in module.parameters(recurse=False)}  # fmt: skip
    return [module for module in model.modules() if isinstance(module, nn.Linear) and id(module.weight) not in shared]


class WeightCopies:
    def __init__(self, linears: Iterable[nn.Linear], dtype: torch.dtype) -> None:
        self.linears = list(linears)
        self.dtype = dtype
        self._float32 = [(layer.weight.data, None if layer.bias is None else layer.bias.data) for layer in self.linears]
        self._low = [(weight.to(dtype), None if bias is None else bias.to(dtype)) for weight, bias in self._float32]
        self.low_in_place = False

    def use(self, low: bool) -> None:
        """Put the low-precision (or the float32) weights in place, if they are not already."""
        if low == self.low_in_place:
            return
        for layer, (weight, bias) in zip(self.linears, self._low if low else self._float32):
            layer.weight.data = weight
            if bias is not None:
                layer.bias.data = bias
        self.low_in_place = low
