"""The method plugin interface.

A method names its size knob, says in closed form how many trainable parameters a size gives
on a backbone (the budget solver relies on it), and applies itself to the backbone, preferably
through a peft config so that saving, loading and merging come from peft.
"""

from __future__ import annotations

import bisect
import copy
import re
import weakref
from collections.abc import Callable, Iterable, Sequence

from torch import nn

from .backbones.base import Backbone
from .errors import UsageError
from .spec import MethodSpec


class Method:
    name: str = ""
    description: str = ""
    #: what a reader of the capabilities matrix (docs/methods.md) should know of its configuration:
    #: what its knob means, the options fixed and why
    notes: str = ""
    #: The knobs a budget reference names, e.g. ("r",) in ``lora:r=8``; empty for methods with a
    #: fixed size. A size may carry finer knobs too (``plus1``), which the solver sets.
    knobs: tuple[str, ...] = ("r",)
    #: Finer size knobs the solver sets to land within 1% (``plus1``, ``hidden``); a reference may name them.
    fine_knobs: tuple[str, ...] = ()
    #: Options that make a variant, ``hora[share=none]``: name -> the values allowed. A variant is a
    #: method of its own (study, records, leaderboard row, count); it starts from ``defaults`` with
    #: the options in place, so ``count()`` and ``apply()`` read them from ``self.defaults``.
    options: dict[str, tuple] = {}
    mergeable: bool = True
    #: True for a method that adapts only language models (its ``check()`` refuses the others)
    language_only: bool = False
    #: False for a method that trains no backbone parameter (the linear probe): no ``lr`` to tune.
    trains_backbone: bool = True
    #: Literature defaults, used with ``--trials 0`` and as the first trial of every study.
    defaults: dict = {"lr": 1e-3, "weight_decay": 1e-4}

    def variant(self, options: dict) -> Method:
        """This method with ``options`` set, named ``name[key=value,...]``; bad options are a UsageError."""
        for key, value in options.items():
            if key not in self.options:
                valid = ", ".join(self.options) or "none"
                raise UsageError(f"{self.name} has no option '{key}' (its options: {valid})")
            if value not in self.options[key]:
                allowed = ", ".join(str(v) for v in self.options[key])
                raise UsageError(f"{self.name}[{key}={value}]: {key} is one of {allowed}")
        # an option at its default names the plain method: one configuration, one study, one row
        options = {key: value for key, value in options.items() if self.defaults.get(key) != value}
        if not options:
            return self
        variant = copy.copy(self)
        variant.defaults = {**self.defaults, **options}
        variant.name = str(MethodSpec(self.name, dict(options)))
        return variant

    def sizes(self, backbone: Backbone) -> Iterable[dict]:
        """Candidate sizes in increasing order of trainable parameters. A Sequence is bisected (its
        counts must not decrease); any other iterable is scanned until past the budget's tolerance."""
        return Ladder(backbone.layout.hidden_size, lambda i: {"r": i + 1})

    def near(self, backbone: Backbone, target: int) -> Iterable[dict]:
        """The sizes the solver weighs for ``target``: on a bisected ``sizes()``, every size within
        1% of it (for ``preference`` to choose among) and the nearest either side; a scanned one
        whole (the solver stops past the tolerance). A method whose sizes are not one monotone
        sequence (HoRA: ranks by widths) overrides this."""
        from .budget import TOLERANCE

        sizes = self.sizes(backbone)
        if not isinstance(sizes, Sequence):
            return sizes

        def count(size):
            return self.count(backbone, size)

        low = bisect.bisect_left(sizes, target * (1 - TOLERANCE), key=count)
        high = bisect.bisect_right(sizes, target * (1 + TOLERANCE), key=count)
        return sizes[max(low - 1, 0):high + 1]

    def preference(self, size: dict) -> float:
        """Among sizes within 1% of a budget the solver takes the lowest preference (then the
        closest count): a second knob can stay near its published default."""
        return 0.0

    def count(self, backbone: Backbone, size: dict) -> int:
        """Trainable parameters at ``size``, head excluded, in closed form."""
        raise NotImplementedError

    def apply(self, backbone: Backbone, size: dict, hparams: dict) -> nn.Module:
        """Return the backbone module with this method's trainable parameters in place."""
        raise NotImplementedError

    def search_space(self, trial) -> dict:
        """Optuna suggestions beyond the shared space (learning rate, weight decay, head learning rate).

        They must leave the trainable-parameter count alone: the budget fixed the size first."""
        return {}

    def check(self, backbone: Backbone) -> None:
        """Raise UsageError when the method cannot adapt this backbone."""


class Ladder(Sequence):
    """Sizes made on demand from their index, so that the solver bisects them instead of listing
    them all: ``Ladder(n, lambda i: {"r": i + 1})``."""

    def __init__(self, length: int, size: Callable[[int], dict]):
        self.length, self.size = length, size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.size(i) for i in range(*index.indices(self.length))]
        if not -self.length <= index < self.length:
            raise IndexError(index)
        return self.size(index % self.length)


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


def target_names(module: nn.Module, suffixes: Sequence[str]) -> list[str]:
    """Full names of the Linears ``linear_shapes`` counts, in the same (depth) order."""
    return [name for name, m in module.named_modules()
            if isinstance(m, nn.Linear) and any(name == s or name.endswith("." + s) for s in suffixes)]


def per_module_sizes(backbone: Backbone, costs: Sequence[int], widest: int) -> Ladder:
    """Sizes ``{"r": r, "plus1": k}`` in increasing count: every target module at width r, the first
    k of them (in depth order) at r + 1. ``costs`` are the parameters one unit of width adds to each
    module, so one step adds a single module's cost: fine enough to land within 1% of a budget."""
    n = len(costs)
    return Ladder((widest - 1) * n + 1, lambda i: {"r": 1 + i // n, "plus1": i % n})


def per_module_count(costs: Sequence[int], size: dict) -> int:
    """What ``per_module_sizes``' width units cost: r units in every module, one more in the first k."""
    k = size.get("plus1", 0)
    return size["r"] * sum(costs) + sum(costs[:k])


def widened(names: Sequence[str], size: dict) -> dict[str, int]:
    """peft's ``rank_pattern`` for a ``per_module_sizes`` size: exact names of the widened modules."""
    return {re.escape(name): size["r"] + 1 for name in names[:size.get("plus1", 0)]}


class PeftMethod(Method):
    """A method expressed as a peft config: saving, loading and merging come from peft."""

    def peft_config(self, backbone: Backbone, size: dict, hparams: dict):
        raise NotImplementedError

    def apply(self, backbone: Backbone, size: dict, hparams: dict) -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(backbone.module, self.peft_config(backbone, size, hparams))
