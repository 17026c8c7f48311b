"""How the leaderboard writes numbers: scores, intervals, paired differences, counts and rates."""

from __future__ import annotations

import math
import re

from .stats import Interval

PERCENT = {"accuracy"}


def fmt_value(value: float, metric: str | None) -> str:
    return f"{value * 100:.1f}" if metric in PERCENT else f"{value:.3g}"


def fmt_signed(value: float, metric: str | None) -> str:
    return f"{value * 100:+.1f}" if metric in PERCENT else f"{value:+.3g}"


def fmt_interval(interval: Interval, metric: str | None) -> str:
    """``mean ± half-width`` of the 95% interval; the mean alone where there is no interval."""
    text = fmt_value(interval.estimate, metric)
    return text + (f" ± {fmt_value(interval.half_width, metric)}" if interval.known else "")


def fmt_delta(interval: Interval, metric: str | None, verdict: str | None = None,
              detectable: float = math.nan) -> str:
    """``+1.2 [+0.3, +2.1] better``: a paired difference (in percentage points for accuracy), its
    interval and the corrected test's verdict; where the test finds nothing, the smallest
    difference it would have found (``detectable``), so that "no verdict" never reads as "equal"."""
    text = fmt_signed(interval.estimate, metric)
    if not interval.known:
        return text + " (1 seed: no test)"
    text += f" [{fmt_signed(interval.low, metric)}, {fmt_signed(interval.high, metric)}]"
    if verdict:
        return f"{text} {verdict}"
    if not math.isnan(detectable):
        return f"{text}, no difference above ±{fmt_value(detectable, metric)} detectable"
    return text


def fmt_count(n: float) -> str:
    return f"{n / 1e6:.3f}M" if n >= 1e5 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,.0f}"


def fmt_rate(samples_per_s: float) -> str:
    """Whole samples/s, with a decimal below 10 (a language model on a CPU trains at about 1)."""
    return f"{samples_per_s:.1f}" if samples_per_s < 10 else f"{samples_per_s:.0f}"


def fmt_fraction(f: float) -> str:
    return f"{f * 100:.3g}%"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")
