"""Configuration of bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021) as a peft tuner."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Union

from peft.config import PeftConfig
from peft.utils.other import get_pattern_key

from peftbench.peft_types import extend_peft_type

# The config needs its PeftType member before the tuner is registered (in __init__), so add it here.
PEFT_TYPE = extend_peft_type("bottleneck")

STYLES = ("houlsby", "pfeiffer")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
INITS = ("zero_up", "random")


def bottleneck_targets(style: str, attn_out: str, mlp_down: str) -> list[str]:
    """peft ``target_modules`` for a style, given one block's attention and MLP output projections.

    Houlsby places an adapter after both sublayers of every block, Pfeiffer only after the MLP.
    """
    if style == "houlsby":
        return [attn_out, mlp_down]
    if style == "pfeiffer":
        return [mlp_down]
    raise ValueError(f"Unknown bottleneck adapter style {style!r}; expected one of {STYLES}.")


@dataclass
class BottleneckConfig(PeftConfig):
    """Sequential bottleneck adapters on the output projections of transformer sublayers.

    Each targeted ``nn.Linear`` computes ``y = W x + b`` and is wrapped to return
    ``y + scaling * up(dropout(act(down(y))))`` with ``down: d -> r`` and ``up: r -> d`` (both with
    bias), i.e. an adapter inserted after the sublayer and before the residual add.

    Args:
        r: bottleneck width.
        rank_pattern: module name or regex -> width for the modules that differ from ``r``, matched
            exactly as LoRA's ``rank_pattern`` (peft's ``get_pattern_key``: a key matches a module whose
            name it fully matches, either whole or as a suffix after a ``.``; the first matching key
            wins), e.g. ``{"blocks.0.attn.proj": 9, "^blocks.1[01].mlp.fc2": 7}``. Per-module widths
            let a parameter budget be met far more finely than one width for every module.
        style: "houlsby" (after attention and MLP outputs) or "pfeiffer" (after the MLP output only).
            Recorded for bookkeeping; which modules are adapted is decided by ``target_modules``
            alone (see ``bottleneck_targets``).
        activation: non-linearity in the bottleneck: "relu", "gelu", "silu" or "tanh".
        scaling: factor on the adapter's output.
        dropout: dropout on the bottleneck activations.
        init: "zero_up" zeroes the up-projection so the adapted model equals the base model at
            init; "random" keeps ``nn.Linear``'s default init for both projections.
        target_modules / exclude_modules / layers_to_transform / layers_pattern / modules_to_save:
            as in the other peft tuners.
    """

    r: int = field(default=8, metadata={"help": "Bottleneck width."})
    rank_pattern: Optional[dict[str, int]] = field(
        default_factory=dict,
        metadata={"help": "Module name or regex -> bottleneck width, for modules whose width differs from `r`."},
    )
    style: str = field(default="houlsby", metadata={"help": f"One of {STYLES}."})
    activation: str = field(default="relu", metadata={"help": f"One of {ACTIVATIONS}."})
    scaling: float = field(default=1.0, metadata={"help": "Factor on the adapter output."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the bottleneck activations."})
    init: str = field(default="zero_up", metadata={"help": f"One of {INITS}."})
    target_modules: Optional[Union[list[str], str]] = field(
        default=None,
        metadata={"help": "Output Linear layers to wrap, e.g. bottleneck_targets('houlsby', 'attn.proj', 'mlp.fc2')."},
    )
    exclude_modules: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Module names or regex of modules not to adapt."}
    )
    layers_to_transform: Optional[Union[list[int], int]] = field(
        default=None, metadata={"help": "Only adapt the blocks with these indices."}
    )
    layers_pattern: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Name of the nn.ModuleList of blocks, used with layers_to_transform."}
    )
    modules_to_save: Optional[list[str]] = field(
        default=None, metadata={"help": "Other modules to train and save, e.g. a classifier head."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = PEFT_TYPE
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)
        if not (isinstance(self.r, int) and self.r > 0):
            raise ValueError(f"`r` must be a positive integer, got {self.r!r}.")
        self.rank_pattern = dict(self.rank_pattern or {})
        for key, width in self.rank_pattern.items():
            if not (isinstance(width, int) and not isinstance(width, bool) and width > 0):
                raise ValueError(f"`rank_pattern` widths must be positive integers, got {key!r}: {width!r}.")
            try:
                re.compile(key)
            except (TypeError, re.error) as err:
                raise ValueError(f"`rank_pattern` keys must be module names or regexes, got {key!r}: {err}.") from None
        if self.style not in STYLES:
            raise ValueError(f"`style` must be one of {STYLES}, got {self.style!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {ACTIVATIONS}, got {self.activation!r}.")
        if self.init not in INITS:
            raise ValueError(f"`init` must be one of {INITS}, got {self.init!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {self.dropout!r}.")
        if isinstance(self.target_modules, str) and (self.layers_to_transform is not None or self.layers_pattern):
            raise ValueError(
                "`layers_to_transform` and `layers_pattern` cannot be used when `target_modules` is a str."
            )
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("When `layers_pattern` is specified, `layers_to_transform` must also be specified.")

    def width(self, module_name: str) -> int:
        """Bottleneck width of the module at ``module_name`` (relative to the base model), as LoRA resolves ranks.

        Both injection and ``bottleneck_parameter_count`` go through here, so the count cannot drift from the
        layers actually built.
        """
        return self.rank_pattern.get(get_pattern_key(self.rank_pattern.keys(), module_name), self.r)
