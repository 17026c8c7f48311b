"""One syntax for a method with options or a size, everywhere: ``name[key=value,...]``.

``--methods 'lora,hora[share=none]'`` names variants, ``--budget 'lora[r=8]'`` a reference size,
``bench --methods 'hora[r=8,hidden=16]'`` an explicit size. The colon form ``lora:r=8`` is read
the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import UsageError

_NAME = r"[A-Za-z][\w.-]*"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    options: dict = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in self.options.items())}]"


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str) -> MethodSpec:
    text = text.strip()
    match = re.fullmatch(rf"({_NAME})(?:\[(.*)\]|:(.*))?", text)
    if match is None:
        raise UsageError(f"cannot read method '{text}' (use name or name[key=value,...])")
    name, inside = match[1], match[2] if match[2] is not None else match[3]
    if inside is None:
        return MethodSpec(name)
    options = {}
    for item in inside.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not re.fullmatch(r"[A-Za-z_]\w*", key) or not value:
            raise UsageError(f"cannot read '{item.strip()}' in method '{text}' (use key=value)")
        if key in options:
            raise UsageError(f"'{key}' given twice in method '{text}'")
        options[key] = _value(value)
    return MethodSpec(name, options)


def split_specs(text: str) -> list[str]:
    """``a,b[x=1,y=2],c`` -> ``a``, ``b[x=1,y=2]``, ``c``: commas inside brackets stay."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    if depth:
        raise UsageError(f"unbalanced brackets in '{text}'")
    return [part.strip() for part in parts if part.strip()]


def parse_specs(text: str) -> list[MethodSpec]:
    return [parse_spec(part) for part in split_specs(text)]
