"""Register out-of-tree peft tuners (HoRA, bottleneck adapters) with peft.

peft keys its registries by members of the ``PeftType`` enum and offers no public way to add
one, so the enum is extended at import time; everything else goes through peft's own
``register_peft_method``, after which ``get_peft_model``, ``save_pretrained``,
``PeftModel.from_pretrained`` and ``merge_and_unload`` treat the tuner like a built-in one.
"""

from __future__ import annotations

from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import PeftType, register_peft_method


def extend_peft_type(name: str) -> PeftType:
    """Return the ``PeftType`` member for ``name`` (upper-cased), adding it if absent."""
    key = name.upper()
    if key in PeftType.__members__:
        return PeftType[key]
    member = str.__new__(PeftType, key)
    member._name_ = key
    member._value_ = key
    member.__objclass__ = PeftType
    type.__setattr__(PeftType, key, member)  # EnumType.__setattr__ refuses new members
    PeftType._member_map_[key] = member
    PeftType._value2member_map_[key] = member
    PeftType._member_names_.append(key)
    return member


def register_tuner(name: str, config_cls, model_cls, prefix: str | None = None) -> PeftType:
    """Make a tuner known to peft once; repeated imports are harmless."""
    peft_type = extend_peft_type(name)
    if peft_type not in PEFT_TYPE_TO_TUNER_MAPPING:
        register_peft_method(name=name, config_cls=config_cls, model_cls=model_cls, prefix=prefix)
    return peft_type
