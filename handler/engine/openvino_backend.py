"""``loading.backend: openvino``: an encoder's forward run by OpenVINO on the CPU.

At load the torch model (float32, as loaded) is converted once with ``openvino.convert_model``
(dynamic batch and length) and compiled for the CPU in float32 (``INFERENCE_PRECISION_HINT f32``:
answers equal torch's float32 to rounding) and, when the execution policy runs under bf16
autocast (``dtype: auto`` chose it, or live traffic switched to it), in bf16. So the precision
is still the one the ExecutionPolicy holds: dtype auto checks and times OpenVINO's bf16 against
its float32 exactly as it does torch's autocast. Outputs come back as torch tensors named as the
model names them (``logits``, ``start_logits``...), so the padded pass reads them unchanged.

Not available with it: packed passes (they reach into the torch layers), int8 quantization and
torch_compile (other ways to speed the same forward), explanations (they need gradients), text
generation (``generate``). Measured on the docs' performance pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from handler.api.errors import ConfigurationError
from handler.api.settings import HandlerSettings, Precision, Quantization

PRECISION_HINTS = {None: "f32", torch.bfloat16: "bf16"}


def check_openvino_settings(settings: HandlerSettings, device: torch.device, generates: bool) -> None:
    """Every setting that cannot run under OpenVINO, named in one error."""
    loading = settings.loading
    problems = []
    if device.type != "cpu":
        problems.append(f"it runs on the CPU here, and this worker has {device}")
    if loading.quantization is not Quantization.NONE:
        problems.append(f"quantization {loading.quantization.value} is torch's int8")
    if loading.torch_compile:
        problems.append("torch_compile is torch's compiler")
    if loading.dtype not in (Precision.FLOAT32, Precision.AUTO):
        problems.append(f"dtype {loading.dtype.value} (use float32 or auto: bf16 is chosen at load)")
    if generates:
        problems.append("text generation runs torch's generate()")
    if problems:
        raise ConfigurationError("handler.loading.backend openvino: " + "; ".join(problems))


class OpenVinoEncoder:
    """Called as the torch model is (keyword tensors in, named outputs out)."""

    def __init__(self, model: Any, input_names: Sequence[str], num_threads: int | None = None) -> None:
        try:
            import openvino
        except ImportError as error:
            raise ConfigurationError(
                "handler.loading.backend openvino needs the openvino package where torchserve runs "
                "(pip install openvino)"
            ) from error
        self.config = model.config
        self.input_names = tuple(input_names)
        example = {name: torch.ones((2, 8), dtype=torch.long) for name in self.input_names}
        if "token_type_ids" in example:
            example["token_type_ids"] = torch.zeros((2, 8), dtype=torch.long)
        with torch.inference_mode():
            output = model(**example, return_dict=True)
        self.output_names = tuple(name for name, value in output.items() if isinstance(value, torch.Tensor))
        named = _NamedOutputs(model, self.input_names, self.output_names)
        try:
            self._converted = openvino.convert_model(named, example_input=tuple(example.values()))
        except Exception as error:
            raise ConfigurationError(f"OpenVINO cannot convert this model: {error}") from error
        self._core = openvino.Core()
        self._threads = {"INFERENCE_NUM_THREADS": num_threads} if num_threads else {}
        self._compiled: dict[str, Any] = {}

    def compiled(self, hint: str) -> Any:
        if hint not in self._compiled:
            config = {"INFERENCE_PRECISION_HINT": hint, **self._threads}
            self._compiled[hint] = self._core.compile_model(self._converted, "CPU", config)
        return self._compiled[hint]

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        if autocast not in PRECISION_HINTS:
            raise RuntimeError(f"the openvino backend has no {autocast} precision")
        # In the converted graph's order; token types are zeros where a pass has none.
        zeros = torch.zeros_like(inputs["input_ids"])
        feed = [inputs.get(name, zeros).numpy() for name in self.input_names]
        results = self.compiled(PRECISION_HINTS[autocast])(feed)
        return {name: torch.from_numpy(results[index].copy()) for index, name in enumerate(self.output_names)}


class _NamedOutputs(torch.nn.Module):
    """The model with positional inputs and its outputs as a tuple, both in the given orders
    (what convert_model traces)."""

    def __init__(self, model: Any, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names, self.output_names = tuple(input_names), tuple(output_names)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(**dict(zip(self.input_names, inputs)), return_dict=True)
        return tuple(output[name] for name in self.output_names)
