"""Every tuner type of the installed peft as a method, found in peft's own registry.

The table says what peft does not (each tuner's size knob, our fixed options); a type peft adds
that the table does not know is listed as refused, with the reason, rather than guessed at.
Importing this package loads neither torch nor peft: a bad method name is refused at once.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version
from pathlib import Path

from peftbench.family import MethodFamily

from ._table_a import ENTRIES as _A
from ._table_b import ENTRIES as _B
from .table import PROMPT_STYLE, Entry

#: types with a hand-written plugin of the same name (its own count and search space)
HAND_WRITTEN = {"lora", "vera"}
TABLE: dict[str, Entry] = {**PROMPT_STYLE, **_A, **_B}


def peft_types() -> list[str]:
    """peft's own tuner types' names, lower-cased: not those another package (peftbench's HoRA)
    registered with it, nor those with a hand-written plugin."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    return sorted(str(t.value).lower() for t, tuner in PEFT_TYPE_TO_TUNER_MAPPING.items()
                  if tuner.__module__.startswith("peft.") and str(t.value).lower() not in HAND_WRITTEN)


def tuner_folders() -> set[str]:
    """peft's tuner types as its source tree names them (a folder each), read without importing peft,
    so that a type the table does not know yet is refused with the reason, not as an unknown name."""
    spec = importlib.util.find_spec("peft")
    if spec is None or not spec.submodule_search_locations:
        return set()
    tuners = Path(next(iter(spec.submodule_search_locations))) / "tuners"
    return {p.name for p in tuners.iterdir() if (p / "config.py").exists()}


class PeftTuners(MethodFamily):
    origin = f"peft {version('peft')}"

    def names(self) -> set[str]:
        return (set(TABLE) | tuner_folders()) - HAND_WRITTEN

    def members(self) -> dict[str, type]:
        from .plugin import tuner_method

        return {name: tuner_method(name.upper(), TABLE[name]) for name in peft_types()
                if name in TABLE and not TABLE[name].refused}

    def refused(self) -> dict[str, str]:
        unknown = "has no entry in peftbench's tuner table (its size knob is unknown)"
        return {name: TABLE[name].refused if name in TABLE else f"{self.origin}'s {name.upper()} {unknown}"
                for name in peft_types() if name not in TABLE or TABLE[name].refused}


TUNERS = PeftTuners()
