"""A bottleneck adapter wrapped around a sublayer's output ``nn.Linear``."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .config import BottleneckConfig

MERGE_ERROR = (
    "Bottleneck adapters are non-linear (up(act(down(y))) on the layer output) and cannot be merged "
    "into the base weights. Use unload() to get the base model back, or keep the PeftModel for inference."
)

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}


class BottleneckLayer(BaseTunerLayer):
    # Trainable per-adapter modules; peft derives trainability, saving and loading from these.
    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_r", "bottleneck_scaling", "bottleneck_activation", "bottleneck_dropout")

    def __init__(self, base_layer: nn.Module, **kwargs) -> None:
        self.base_layer = base_layer
        self.bottleneck_r: dict[str, int] = {}
        self.bottleneck_scaling: dict[str, float] = {}
        self.bottleneck_activation: dict[str, str] = {}
        self.bottleneck_down = nn.ModuleDict({})
        self.bottleneck_up = nn.ModuleDict({})
        self.bottleneck_dropout = nn.ModuleDict({})
        self._disable_adapters = False
        self.merged_adapters = []
        self.cast_input_dtype_enabled = True
        self.kwargs = kwargs

        base_layer = self.get_base_layer()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"Bottleneck adapters wrap nn.Linear output projections, got {type(base_layer).__name__}.")
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features

    def update_layer(self, adapter_name: str, config: BottleneckConfig, r: Optional[int] = None, **kwargs) -> None:
        """Add adapter ``adapter_name`` of width ``r``, the module's own width resolved by the tuner from
        ``config.rank_pattern`` (``config.r`` when not given)."""
        d, r = self.out_features, config.r if r is None else r
        self.bottleneck_r[adapter_name] = r
        self.bottleneck_scaling[adapter_name] = config.scaling
        self.bottleneck_activation[adapter_name] = config.activation
        self.bottleneck_dropout[adapter_name] = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        # The adapter reads the layer's output, so both projections live in the output width d.
        self.bottleneck_down[adapter_name] = nn.Linear(d, r, bias=True)
        self.bottleneck_up[adapter_name] = nn.Linear(r, d, bias=True)
        if config.init == "zero_up":
            # A zero up-projection makes the adapter an exact identity at init, while down keeps its
            # random init so the gradient into up is non-zero from the first step.
            nn.init.zeros_(self.bottleneck_up[adapter_name].weight)
            nn.init.zeros_(self.bottleneck_up[adapter_name].bias)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        raise ValueError(MERGE_ERROR)

    def unmerge(self) -> None:
        # Nothing can ever be merged, so there is nothing to undo.
        return None


class BottleneckLinear(nn.Module, BottleneckLayer):
    """``y = base(x); y + scaling * up(dropout(act(down(y))))``: a sequential adapter after the sublayer."""

    def __init__(
        self, base_layer: nn.Module, adapter_name: str, config: BottleneckConfig, r: Optional[int] = None, **kwargs
    ) -> None:
        super().__init__()
        BottleneckLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, r=r)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return y
        out = y
        # Several active adapters each read the sublayer output and their contributions add up,
        # like the other additive peft tuners.
        for name in self.active_adapters:
            if name not in self.bottleneck_down:
                continue
            down, up = self.bottleneck_down[name], self.bottleneck_up[name]
            h = self._cast_input_dtype(y, down.weight.dtype)
            h = self.bottleneck_dropout[name](_ACTIVATIONS[self.bottleneck_activation[name]](down(h)))
            out = out + (self.bottleneck_scaling[name] * up(h)).to(y.dtype)
        return out

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()
