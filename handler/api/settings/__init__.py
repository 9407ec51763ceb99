"""The ``handler:`` section of ``model-config.yaml``, read once at load into a frozen object.

- ``options``: the enums of the settings that take a word;
- ``checks``: how a key's value is checked, and the ``setting()`` field that carries its check and doc;
- ``groups``: ``loading``, ``batching``, ``limits``, ``classification``, ``zero_shot``, ``generation``,
  ``explanations``, ``serving``, ``monitoring``: every key defined once;
- ``fitted``: what training and calibration write (calibration, conformal, abstention, drift reference);
- ``handler_settings``: ``HandlerSettings`` and reading YAML into it (flat keys of earlier releases too);
- ``reference``: the configuration reference, read from the same fields.

The grouped spelling is current::

    handler:
      loading: {dtype: bfloat16}
      batching: {micro_batch_size: 16}
"""

from handler.api.settings.fitted import AbstentionSettings, Calibration, ConformalSettings, DriftReference
from handler.api.settings.groups import (
    BatchingSettings,
    ClassificationSettings,
    ExplanationSettings,
    GenerationSettings,
    LimitSettings,
    LoadingSettings,
    MonitoringSettings,
    ServingSettings,
    ZeroShotSettings,
)
from handler.api.settings.handler_settings import FLAT_KEYS, GROUPS, TOP_LEVEL, HandlerSettings
from handler.api.settings.options import (
    MAX_EXPLAIN_STEPS,
    AttentionImplementation,
    Backend,
    ConformalMethod,
    Float32Linear,
    LongText,
    Precision,
    Quantization,
)

__all__ = [
    "FLAT_KEYS",
    "GROUPS",
    "MAX_EXPLAIN_STEPS",
    "TOP_LEVEL",
    "AbstentionSettings",
    "AttentionImplementation",
    "Backend",
    "BatchingSettings",
    "Calibration",
    "ClassificationSettings",
    "ConformalMethod",
    "ConformalSettings",
    "DriftReference",
    "ExplanationSettings",
    "Float32Linear",
    "GenerationSettings",
    "HandlerSettings",
    "LimitSettings",
    "LoadingSettings",
    "LongText",
    "MonitoringSettings",
    "Precision",
    "Quantization",
    "ServingSettings",
    "ZeroShotSettings",
]
