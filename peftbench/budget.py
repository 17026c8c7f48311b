"""Equal trainable-parameter budgets: parse ``0.3M`` or ``lora:r=8`` and size every method to it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import UsageError
from .spec import MethodSpec, parse_spec, split_specs

if TYPE_CHECKING:  # parsing a budget needs no torch: bad input is refused at once
    from .backbones.base import Backbone
    from .method import Method

TOLERANCE = 0.01  # a method lands within 1% of the budget, or is marked as not reaching it
#: the budget of a fixed-size method (linear, full): one run whatever the budgets asked for
FIXED = "fixed"
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
    target: int  # the budget in parameters

    @property
    def ratio(self) -> float:
        return self.count / self.target if self.target else 1.0

    @property
    def reached(self) -> bool:
        """Within 1% of the budget; a fixed-size method (linear, full) is a reference point."""
        return self.size == {} or abs(self.ratio - 1) <= TOLERANCE


def parse_budget(text: str) -> Budget:
    text = text.strip()
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)", text):
        params = round(float(match[1]) * _SUFFIX[match[2].lower()])
        if params <= 0:
            raise UsageError(f"budget '{text}' must be positive")
        return Budget(text, params=params)
    reference = _reference(text)
    if reference is None:
        raise UsageError(f"cannot parse budget '{text}' (use a count like 0.3M or 300k, or a reference like "
                         f"lora[r=8])")
    return Budget(text, method=reference.name, size=reference.options)


def parse_budgets(text: str) -> list[Budget]:
    """``30k,150k,600k`` (or references, ``lora[r=4],lora[r=16]``): several budgets give accuracy
    against trainable-parameter curves."""
    budgets = [parse_budget(part) for part in split_specs(text)]
    if not budgets:
        raise UsageError("no budget given (e.g. --budget 150k or lora[r=8])")
    if len({b.text for b in budgets}) < len(budgets):
        raise UsageError(f"budget '{text}' names a budget twice")
    return budgets


def _reference(text: str) -> MethodSpec | None:
    """``lora[r=8]`` (or ``lora:r=8``): a method at a size of whole numbers."""
    try:
        spec = parse_spec(text)
    except UsageError:
        return None
    if not spec.options or not all(isinstance(v, int) and not isinstance(v, bool) for v in spec.options.values()):
        return None
    return spec


def budget_params(budget: Budget, backbone: Backbone, methods: dict[str, Method]) -> int:
    if budget.params is not None:
        return budget.params
    if budget.method not in methods:
        raise UsageError(f"unknown method '{budget.method}' in budget '{budget.text}' "
                         f"(available: {', '.join(sorted(methods))})")
    method = methods[budget.method]
    if not set(method.knobs) <= set(budget.size) <= set(method.knobs + method.fine_knobs):
        knobs = ", ".join(f"{k}=N" for k in method.knobs) or "no size"
        raise UsageError(f"budget '{budget.text}': {method.name} takes {knobs}")
    try:
        return method.count(backbone, budget.size)
    except Exception as exc:  # a plugin's bug: the budget cannot be known, so nothing can run
        raise UsageError(f"budget '{budget.text}': {method.name}'s count() failed: {one_line(exc)}") from exc


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def solve(method: Method, backbone: Backbone, target: int) -> Sizing:
    """The size that lands within 1% of ``target`` (the method's preferred one where several do,
    then the closest), never exceeding it by more than 1%.

    A method that cannot land within 1% (its largest size stays below the budget, as VeRA's may, or
    its finest step is too coarse there) gets its closest size below and is marked as not reaching it.
    """
    if not method.knobs:
        count = method.count(backbone, {})
        return Sizing({}, count, target or count)
    best = None
    for size in method.near(backbone, target):
        count = method.count(backbone, size)
        if count > target * (1 + TOLERANCE):
            break  # sizes come smallest first, so every later one is larger still
        miss = abs(count - target)
        rank = (method.preference(size) if miss <= target * TOLERANCE else float("inf"), miss)
        if best is None or rank < best[0]:
            best = (rank, size, count)
    if best is None:
        raise UsageError(f"budget of {target:,} parameters is too small for {method.name} on {backbone.name}")
    return Sizing(best[1], best[2], target)
