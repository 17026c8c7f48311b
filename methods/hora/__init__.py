"""HoRA: cross-head low-rank adaptation with a joint hypernetwork, as a peft tuner."""

from peftbench.peft_types import register_tuner

from .config import HoraConfig
from .count import hora_parameter_count
from .layer import HoraGenerator, HoraLayer, HoraMLP, Linear
from .model import HoraModel

HORA = register_tuner("hora", HoraConfig, HoraModel, prefix="hora_")

__all__ = [
    "HORA",
    "HoraConfig",
    "HoraGenerator",
    "HoraLayer",
    "HoraMLP",
    "HoraModel",
    "Linear",
    "hora_parameter_count",
]
