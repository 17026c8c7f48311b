"""The notes under a scores table: what bold, "(chance)" and † mean there."""

from __future__ import annotations

from ..formats import fmt_value
from ..judging import CHANCE, Columns, chance_level
from ..stats import ALPHA
from .model import Text


def legend(notes: dict[str, bool], cols: Columns, has_untrained: bool) -> list[Text]:
    """One paragraph per mark the table uses (``notes``: best, chance, short)."""
    lines = []
    if notes["best"]:
        lines.append("**Bold**: no other row is better: every pair of rows in the column is compared by a paired t "
                     "test over their shared seeds, and the column's pairs are one family, Holm-corrected "
                     f"(family-wise error {ALPHA:.0%}); the bold rows cannot be told from the best. A column "
                     "with one seed per row tests nothing and bolds nothing. In the parameter, throughput and "
                     "memory columns bold marks the best measured value.")
    if notes["chance"]:
        levels = {t: chance_level(cols.suite, t) for t in cols.tasks}
        if all(level is not None for level in levels.values()):
            what = ("not above chance: the 95% interval's lower end is not above 1/classes ("
                    + ", ".join(f"{t} {fmt_value(v, 'accuracy')}%" for t, v in levels.items()) + ")")
        else:
            what = ("no better than the untrained model (the rows that train nothing, "
                    if has_untrained else "no better than chance (")
            what += "paired 95% interval of the difference not below 0)" if has_untrained else "1/classes)"
        lines.append(f"{CHANCE}: {what}; never bold.")
    if notes["short"]:
        lines.append("† cannot land within 1% of the budget: ran at its closest size below (see % of budget).")
    return [Text.of(line) for line in lines]
