"""Equal trainable-parameter budgets: parse ``0.3M`` or ``lora:r=8`` and size every method to it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .backbones.base import Backbone
from .errors import UsageError
from .method import Method

TOLERANCE = 0.05  # a method may exceed the budget by at most 5%
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


@dataclass(frozen=True)
class Budget:
    text: str
    params: int | None = None  # a plain count
    method: str | None = None  # or a reference: the count `method` has at `size`
    size: dict | None = None


@dataclass(frozen=True)
class Sizing:
    size: dict
    count: int
    reached: bool  # False: the method's largest sensible size stays below the budget


def parse_budget(text: str) -> Budget:
    text = text.strip()
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)", text):
        params = round(float(match[1]) * _SUFFIX[match[2].lower()])
        if params <= 0:
            raise UsageError(f"budget '{text}' must be positive")
        return Budget(text, params=params)
    if match := re.fullmatch(r"([a-z][\w-]*):((?:\w+=\d+)(?:,\w+=\d+)*)", text):
        size = {k: int(v) for k, v in (kv.split("=") for kv in match[2].split(","))}
        return Budget(text, method=match[1], size=size)
    raise UsageError(f"cannot parse budget '{text}' (use a count like 0.3M or 300k, or a reference like lora:r=8)")


def budget_params(budget: Budget, backbone: Backbone, methods: dict[str, Method]) -> int:
    if budget.params is not None:
        return budget.params
    if budget.method not in methods:
        raise UsageError(f"unknown method '{budget.method}' in budget '{budget.text}' (available: {', '.join(sorted(methods))})")
    method = methods[budget.method]
    if set(budget.size) != set(method.knobs):
        knobs = ", ".join(f"{k}=N" for k in method.knobs) or "none"
        raise UsageError(f"budget '{budget.text}': {method.name} takes {knobs}")
    return method.count(backbone, budget.size)


def solve(method: Method, backbone: Backbone, target: int) -> Sizing:
    """The size whose count is closest to ``target`` without exceeding it by more than 5%."""
    if not method.knobs:
        return Sizing({}, method.count(backbone, {}), reached=True)
    best, outgrown = None, False
    for size in method.sizes(backbone):
        count = method.count(backbone, size)
        if count > target * (1 + TOLERANCE):
            outgrown = True
            break  # sizes come smallest first, so every later one is larger still
        if best is None or abs(count - target) < abs(best[1] - target):
            best = (size, count)
    if best is None:
        raise UsageError(f"budget of {target:,} parameters is too small for {method.name} on {backbone.name}")
    # Not reached: even the largest size stays clearly below the budget (VeRA's count grows
    # slowly with rank), as opposed to a knob too coarse to land within 5%.
    return Sizing(best[0], best[1], reached=outgrown or best[1] >= target * (1 - TOLERANCE))
