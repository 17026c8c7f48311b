"""Bottleneck adapters (Houlsby, Pfeiffer) as a peft tuner.

Importing this package registers the ``"bottleneck"`` peft type, after which ``get_peft_model``,
``save_pretrained`` and ``PeftModel.from_pretrained`` handle ``BottleneckConfig`` like a built-in.
"""

from peftbench.peft_types import register_tuner

from .config import BottleneckConfig, bottleneck_targets
from .layer import MERGE_ERROR, BottleneckLayer, BottleneckLinear
from .model import BottleneckModel, bottleneck_parameter_count

PEFT_TYPE = register_tuner("bottleneck", BottleneckConfig, BottleneckModel, prefix="bottleneck_")

__all__ = [
    "MERGE_ERROR",
    "PEFT_TYPE",
    "BottleneckConfig",
    "BottleneckLayer",
    "BottleneckLinear",
    "BottleneckModel",
    "bottleneck_parameter_count",
    "bottleneck_targets",
]
