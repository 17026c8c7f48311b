"""One peft tuner type as a method: peft's own config and tuner, sized by the table's knob."""

from __future__ import annotations

import copy
import warnings
import weakref

import torch
from peft import get_peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from torch import nn

from peftbench.errors import UsageError
from peftbench.method import Ladder, PeftMethod, linear_shapes
from peftbench.records import Modality

from .table import Entry

_skeletons: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()
_counts: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


class PeftTuner(PeftMethod):
    """Set by ``tuner_method``: the peft type and its table entry."""

    peft_type: str = ""
    entry: Entry = Entry(knob=None)
    defaults = {"lr": 1e-3, "weight_decay": 1e-4}

    def sizes(self, backbone):
        if not self.knobs:
            return [{}]
        values = self.entry.values(linear_shapes(backbone.module, self.targets(backbone)))
        return Ladder(len(values), lambda i: {self.entry.knob: values[i]})

    def count(self, backbone, size):
        # peft knows each tuner's count and this table need not: apply it to a weightless copy
        key = (self.peft_type, tuple(backbone.target_modules), tuple(sorted(size.items())))
        counts = _counts.setdefault(backbone.module, {})
        if key not in counts:
            counts[key] = trainable_after(backbone.module, self.peft_config(backbone, size, self.defaults))
        return counts[key]

    def targets(self, backbone) -> list[str]:
        if self.entry.targets == "norm":
            return norm_names(backbone.module)
        return backbone.target_modules

    def peft_config(self, backbone, size, hparams):
        knob = {self.entry.knob: size[self.entry.knob]} if self.entry.knob else {}
        config = PEFT_TYPE_TO_CONFIG_MAPPING[self.peft_type]
        return config(target_modules=self.targets(backbone), **self.entry.options, **knob)

    def check(self, backbone):
        if self.entry.lm_only and backbone.modality is not Modality.TEXT:
            raise UsageError(f"{self.name} applies to language backbones only, not {backbone.name}")


def tuner_method(peft_type: str, entry: Entry) -> type[PeftTuner]:
    """A method class for one peft tuner type, as a hand-written plugin would declare it."""
    config = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]
    name = peft_type.lower()
    sized = f"sized by {entry.knob}" if entry.knob else "fixed size"
    return type(config.__name__.removesuffix("Config"), (PeftTuner,), {
        "name": name,
        "description": f"peft's {config.__name__}, {sized}",
        "peft_type": peft_type,
        "entry": entry,
        "knobs": (entry.knob,) if entry.knob else (),
        "mergeable": entry.mergeable,
        "language_only": entry.lm_only,
        "notes": notes(entry),
        "__module__": __name__,
    })


def notes(entry: Entry) -> str:
    fixed = ", ".join(f"{key}={value!r}" for key, value in entry.options.items())
    return entry.why + (f" (set: {fixed}; the rest at peft's defaults)" if fixed else "")


def trainable_after(module: nn.Module, config) -> int:
    """Trainable parameters once ``config`` is applied: on a copy with no weights (the meta device)
    where the tuner's initialisation allows, else on a real copy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = get_peft_model(copy.deepcopy(skeleton(module)), copy.deepcopy(config))
        except Exception:  # an initialisation that reads weights (an SVD, a QR) needs them
            model = get_peft_model(copy.deepcopy(module), copy.deepcopy(config))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def skeleton(module: nn.Module) -> nn.Module:
    if module not in _skeletons:
        _skeletons[module] = copy.deepcopy(module).to("meta")
    return _skeletons[module]


def norm_names(module: nn.Module) -> list[str]:
    """The normalisation layers inside the blocks (names with a block index), not the final one."""
    return [name for name, m in module.named_modules()
            if "norm" in type(m).__name__.lower() and any(part.isdigit() for part in name.split("."))]
