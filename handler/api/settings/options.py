"""The closed choices of the ``handler:`` settings, one enum per setting that takes a word."""

from __future__ import annotations

import enum

# Integrated gradients runs this many interpolated inputs in one batch: bounded for memory.
MAX_EXPLAIN_STEPS = 512


class Precision(str, enum.Enum):
    """``loading.dtype``: the dtype the weights are loaded in; ``auto``: float32 weights, with bf16
    autocast where it is fast here and agrees with float32 on a probe (handler/engine/precision.py)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    AUTO = "auto"


class Quantization(str, enum.Enum):
    """``loading.quantization``. Other int8 schemes (per-channel scales, a float32 head) were
    measured and not offered: they moved scores as much and ran slower (docs: performance)."""

    NONE = "none"
    DYNAMIC_INT8 = "dynamic_int8"


class Backend(str, enum.Enum):
    """``loading.backend``: what runs an encoder's forward (handler/engine/openvino_backend.py)."""

    TORCH = "torch"
    OPENVINO = "openvino"


class Float32Linear(str, enum.Enum):
    """``loading.float32_linear``: which CPU kernel runs float32 linear layers
    (handler/engine/linear_kernels.py); auto: the faster of the two, timed at load."""

    AUTO = "auto"
    TORCH = "torch"
    ONEDNN = "onednn"


class AttentionImplementation(str, enum.Enum):
    SDPA = "sdpa"
    EAGER = "eager"


class ConformalMethod(str, enum.Enum):
    """``conformal.method``: how prediction sets were fitted (handler/postprocess/conformal.py)."""

    LAC = "lac"
    APS = "aps"
    CLASS_CONDITIONAL = "class_conditional"
    FNR_CONTROL = "fnr_control"

    @property
    def per_label(self) -> bool:
        return self is ConformalMethod.CLASS_CONDITIONAL

    @property
    def multi_label(self) -> bool:
        return self is ConformalMethod.FNR_CONTROL


class LongText(str, enum.Enum):
    """``parameters.long_text``: a text longer than the window is cut (the pipeline's way), or
    read whole and its windows' scores averaged or maxed per label (sequence classification)."""

    TRUNCATE = "truncate"
    MEAN = "mean"
    MAX = "max"

    @property
    def windowed(self) -> bool:
        return self is not LongText.TRUNCATE
