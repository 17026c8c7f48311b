"""The method plugin interface.

A method names its size knob, says in closed form how many trainable parameters a size gives
on a backbone (the budget solver relies on it), and applies itself to the backbone, preferably
through a peft config so that saving, loading and merging come from peft.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

from torch import nn

from .backbones.base import Backbone
from .errors import UsageError


class Method:
    name: str = ""
    description: str = ""
    #: The knobs a budget turns, e.g. ("r",); empty for methods with a fixed size.
    knobs: tuple[str, ...] = ("r",)
    mergeable: bool = True
    #: Literature defaults, used with ``--trials 0`` and as the base of every trial.
    defaults: dict = {"lr": 1e-3, "weight_decay": 1e-4}

    def sizes(self, backbone: Backbone) -> Iterable[dict]:
        """Candidate sizes in increasing order of trainable parameters."""
        return ({"r": r} for r in range(1, backbone.layout.hidden_size + 1))

    def count(self, backbone: Backbone, size: dict) -> int:
        """Trainable parameters at ``size``, head excluded, in closed form."""
        raise NotImplementedError

    def apply(self, backbone: Backbone, size: dict, hparams: dict) -> nn.Module:
        """Return the backbone module with this method's trainable parameters in place."""
        raise NotImplementedError

    def search_space(self, trial) -> dict:
        """Optuna suggestions beyond the shared learning rate and weight decay.

        They must leave the trainable-parameter count alone: the budget fixed the size first."""
        return {}

    def check(self, backbone: Backbone) -> None:
        """Raise UsageError when the method cannot adapt this backbone."""


_shapes_cache: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def linear_shapes(module: nn.Module, suffixes: Sequence[str]) -> list[tuple[int, int]]:
    """(in_features, out_features) of every Linear whose name ends with one of ``suffixes``.

    Cached per module: the budget solver asks for the same shapes once per candidate size.
    """
    cache = _shapes_cache.setdefault(module, {})
    key = tuple(suffixes)
    if key not in cache:
        cache[key] = _find_linear_shapes(module, suffixes)
    return cache[key]


def _find_linear_shapes(module: nn.Module, suffixes: Sequence[str]) -> list[tuple[int, int]]:
    shapes = [
        (m.in_features, m.out_features)
        for name, m in module.named_modules()
        if isinstance(m, nn.Linear) and any(name == s or name.endswith("." + s) for s in suffixes)
    ]
    if not shapes:
        raise UsageError(f"no Linear layer named {', '.join(suffixes)} in this backbone")
    return shapes


def low_rank_space(trial) -> dict:
    """What LoRA-style methods tune besides the step: the update's scale and its dropout."""
    return {"alpha_over_r": trial.suggest_categorical("alpha_over_r", [0.5, 1.0, 2.0]),
            "dropout": trial.suggest_categorical("dropout", [0.0, 0.1])}


def default_targets(backbone: Backbone) -> list[str]:
    """The projections the literature adapts: q and v for encoders, q,k,v,up,down for Llama."""
    layout = backbone.layout
    if backbone.family == "llama":
        up = [name for name in layout.mlp_up if name.endswith("up_proj")] or list(layout.mlp_up)
        return [layout.q, layout.k, layout.v, *up, layout.mlp_down]
    return [layout.q, layout.v]


class PeftMethod(Method):
    """A method expressed as a peft config: saving, loading and merging come from peft."""

    def peft_config(self, backbone: Backbone, size: dict, hparams: dict):
        raise NotImplementedError

    def apply(self, backbone: Backbone, size: dict, hparams: dict) -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(backbone.module, self.peft_config(backbone, size, hparams))
