"""The leaderboard's figures: metric against trainable parameters (Pareto) and against the data
fraction (sample efficiency). matplotlib's object API on the Agg canvas: no display, no pyplot
state shared with a caller. A method has one colour, the same in every figure (``color``)."""

from __future__ import annotations

import math
import textwrap
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FixedLocator, FuncFormatter, NullFormatter, NullLocator

#: the built-in methods' colours (matplotlib's tab10, in this order), so they never collide
KNOWN = ("lora", "dora", "vera", "adapter", "hora", "linear", "full")
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf")
#: colours for any other method (variants, third-party plugins), chosen by a stable hash of the name
OTHERS = (*TAB10[len(KNOWN):], "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
          "#dbdb8d", "#9edae5", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
#: line styles for the budgets of one method in one panel (its colour stays)
STYLES = ("-", "--", ":", "-.")


def color(method: str) -> str:
    """The method's colour in every figure: fixed for the built-in methods, otherwise picked by a
    CRC32 of its name (the same in every process and run, unlike Python's ``hash``)."""
    if method in KNOWN:
        return TAB10[KNOWN.index(method)]
    return OTHERS[zlib.crc32(method.encode()) % len(OTHERS)]


@dataclass(frozen=True)
class Point:
    x: float
    mean: float
    low: float = math.nan  # the interval's ends; nan: no interval
    high: float = math.nan


@dataclass(frozen=True)
class Line:
    """One method's points (several budgets, or several fractions), drawn in the method's colour."""

    method: str
    label: str
    points: list[Point] = field(default_factory=list)
    style: str = "-"


@dataclass(frozen=True)
class Axis:
    """What the y axis shows: its label, and whether lower is better (then it is log-scaled)."""

    label: str
    lower_is_better: bool
    scale: float = 1.0  # 100 for accuracy shown in percent


def _save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120, metadata={"Software": None})  # no version stamp: same runs, same bytes


def pareto_front(points: list[Point], lower_is_better: bool) -> list[Point]:
    """Points no other point beats with as few or fewer parameters, in increasing parameters."""
    front, best = [], None
    for p in sorted(points, key=lambda p: (p.x, p.mean if lower_is_better else -p.mean)):
        if best is None or (p.mean < best if lower_is_better else p.mean > best):
            front.append(p)
            best = p.mean
    return front


def _wrapped(title: str, figure: Figure, width: float | None = None) -> str:
    """A title broken into lines that fit the figure (about 11 characters per inch)."""
    return textwrap.fill(title, width=int((width or figure.get_figwidth()) * 11))


def _errors(points: list[Point], s: float, floor: bool) -> list[list[float]] | None:
    """Asymmetric error bars from the intervals (none where no point has one); on a log axis
    (``floor``) a bar reaching zero stops at a twentieth of its point."""
    if not any(not math.isnan(p.low) for p in points):
        return None
    below, above = [], []
    for p in points:
        low = p.low if not math.isnan(p.low) else p.mean
        high = p.high if not math.isnan(p.high) else p.mean
        if floor:
            low = max(low, p.mean * 0.05)
        below.append(max(0.0, (p.mean - low) * s))
        above.append(max(0.0, (high - p.mean) * s))
    return [below, above]


def pareto(lines: list[Line], axis: Axis, title: str, path: Path, interval: str = "95% interval") -> Figure:
    """The metric against trainable parameters (log x), one line per method through its budgets
    (a fixed-size method is one point), error bars from the intervals, labels in a legend beside
    the axes. Methods training no backbone parameter (a log axis has no zero) are horizontal lines.
    Returns the figure (already saved), for a caller that inspects it."""
    figure = Figure(figsize=(8.4, 4.6), layout="constrained")
    ax = figure.add_subplot()
    s = axis.scale
    sized = [p for line in lines for p in line.points if p.x > 0]
    for line in sorted(lines, key=lambda line: line.label):
        c = color(line.method)
        zero = [p for p in line.points if p.x <= 0]
        points = sorted((p for p in line.points if p.x > 0), key=lambda p: p.x)
        if points:
            ax.errorbar([p.x for p in points], [p.mean * s for p in points],
                        yerr=_errors(points, s, axis.lower_is_better), fmt="o", linestyle=line.style, color=c,
                        capsize=3, markersize=5, label=line.label)
        for p in zero:
            ax.axhline(p.mean * s, color=c, linestyle=":", label=f"{line.label} (0 trainable)")
    front = pareto_front(sized, axis.lower_is_better)
    if len(front) > 1:
        ax.step([p.x for p in front], [p.mean * s for p in front], where="post", color="0.6",
                linewidth=1, zorder=0, label="Pareto front")
    if sized:
        ax.set_xscale("log")
        low, high = min(p.x for p in sized), max(p.x for p in sized)
        if high < 10 * low:  # at least a decade, or log ticks crowd into unreadable labels
            ax.set_xlim(low / 2, high * 2)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if axis.lower_is_better:
        ax.set_yscale("log")
    ax.set_xlabel("trainable parameters (head excluded, log scale)")
    ax.set_ylabel(axis.label)
    ax.set_title(_wrapped(title, figure, 6.2), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    figure.legend(loc="outside right upper", fontsize=8, title=f"mean, {interval}", title_fontsize=8)
    _save(figure, path)
    return figure


def _count_labels(counts: dict[float, int]) -> FuncFormatter:
    """Labels a fraction's tick with the examples recorded at the nearest fraction run."""
    def label(fraction, _):
        return f"{counts[min(counts, key=lambda run: abs(run - fraction))]:,}"
    return FuncFormatter(label)


def fractions(panels: dict[str, list[Line]], axis: Axis, title: str, path: Path,
              examples: dict[str, dict[float, int]] | None = None, interval: str = "95% interval") -> Figure:
    """One panel per entry of ``panels`` (task or suite mean), one line per method (and budget):
    the mean and a band for its interval against the fraction of the training split (log x).
    ``examples`` gives a panel's training examples at each fraction, for a second axis."""
    figure = Figure(figsize=(5.2 * len(panels) + 1.8, 4.4), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    s = axis.scale
    for ax, (name, lines) in zip(axes, panels.items()):
        for line in sorted(lines, key=lambda line: line.label):
            c = color(line.method)
            points = sorted(line.points, key=lambda p: p.x)
            xs, means = [p.x for p in points], [p.mean * s for p in points]
            ax.plot(xs, means, marker="o", color=c, linestyle=line.style, label=line.label)
            if any(not math.isnan(p.low) for p in points):
                low = [(p.low if not math.isnan(p.low) else p.mean) * s for p in points]
                high = [(p.high if not math.isnan(p.high) else p.mean) * s for p in points]
                if axis.lower_is_better:  # a band reaching zero has no place on a log axis
                    low = [max(lo, m * 0.05) for lo, m in zip(low, means)]
                ax.fill_between(xs, low, high, color=c, alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        ticks = sorted({p.x for line in lines for p in line.points})
        ax.xaxis.set_major_locator(FixedLocator(ticks))  # the fractions run, as percentages
        ax.xaxis.set_major_formatter(FuncFormatter(lambda f, _: f"{f * 100:.3g}%"))
        ax.xaxis.set_minor_locator(NullLocator())
        if axis.lower_is_better:
            ax.set_yscale("log")
        ax.set_xlabel("fraction of the training split (log scale)")
        ax.set_ylabel(axis.label)
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        counts = (examples or {}).get(name)
        if counts:
            top = ax.secondary_xaxis("top")
            top.xaxis.set_major_locator(FixedLocator([f for f in ticks if f in counts]))
            top.xaxis.set_major_formatter(_count_labels(counts))
            top.xaxis.set_minor_locator(NullLocator())
            top.set_xlabel("training examples", fontsize=8)
    handles = {}  # one legend for the figure: each label once, from whichever panel has it
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8,
                  title=f"mean, band: {interval}", title_fontsize=8)
    # left-aligned and wrapped short of the legend beside the panels
    figure.suptitle(_wrapped(title, figure, figure.get_figwidth() - 2.8), fontsize=11, x=0.01, ha="left")
    _save(figure, path)
    return figure


def profiles(taus, shares: dict[str, tuple[str, object]], axis: Axis, title: str, path: Path) -> Figure:
    """Performance profiles (Agarwal et al. 2021): per method, the share of its runs (every seed of
    every task) scoring better than each threshold. ``shares``: label -> (method, shares)."""
    figure = Figure(figsize=(8.4, 4.6), layout="constrained")
    ax = figure.add_subplot()
    s = axis.scale
    for label, (method, share) in sorted(shares.items()):
        ax.plot([t * s for t in taus], share, color=color(method), label=label)
    if axis.lower_is_better:
        ax.set_xscale("log")
    ax.set_xlabel(axis.label)
    ax.set_ylabel(f"share of runs {'below' if axis.lower_is_better else 'above'} the threshold")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    figure.legend(loc="outside right upper", fontsize=8)
    ax.set_title(_wrapped(title, figure, 6.2), fontsize=10)
    _save(figure, path)
    return figure


def convergence(lines: list[Line], title: str, path: Path) -> Figure:
    """Per method, the share of its studies whose final winner has been found by each trial."""
    figure = Figure(figsize=(8.4, 4.2), layout="constrained")
    ax = figure.add_subplot()
    for line in sorted(lines, key=lambda line: line.label):
        ax.plot([p.x for p in line.points], [p.mean for p in line.points], marker="o", color=color(line.method),
                label=line.label)
    ax.set_xlabel("trials run (the first: the method's defaults)")
    ax.set_ylabel("share of studies with their winner found")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    figure.legend(loc="outside right upper", fontsize=8)
    ax.set_title(_wrapped(title, figure, 6.2), fontsize=10)
    _save(figure, path)
    return figure
