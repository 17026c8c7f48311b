"""Merged copies of adapted models: what a mergeable method costs at inference once deployed."""

from __future__ import annotations

import copy

from torch import nn


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of an adapted model with every peft adapter merged into its base weights and the
    tuner layers removed (``model`` itself is untouched). A model without adapters comes back as
    a plain copy. Raises what peft raises for a method that cannot merge (bottleneck adapters).
    """
    from peft import PeftModel

    clone = copy.deepcopy(model)
    if isinstance(clone, PeftModel):
        return clone.merge_and_unload()
    for name, child in list(clone.named_modules()):
        if isinstance(child, PeftModel):
            parent, _, attr = name.rpartition(".")
            setattr(clone.get_submodule(parent) if parent else clone, attr, child.merge_and_unload())
    return clone
