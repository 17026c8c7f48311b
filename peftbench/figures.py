"""The leaderboard's figures: metric against trainable parameters (Pareto) and against the data
fraction (sample efficiency). matplotlib's object API on the Agg canvas: no display, no pyplot
state shared with a caller."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FixedLocator, FuncFormatter, NullFormatter, NullLocator


@dataclass(frozen=True)
class Point:
    label: str  # method (and budget where several)
    x: float
    mean: float
    std: float


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


def _wrapped(title: str, figure: Figure) -> str:
    """A title broken into lines that fit the figure (about 11 characters per inch)."""
    return textwrap.fill(title, width=int(figure.get_figwidth() * 11))


def pareto(points: list[Point], axis: Axis, title: str, path: Path) -> None:
    """Mean metric over tasks against trainable parameters (log x); methods training no backbone
    parameter (a log axis has no zero) are drawn as horizontal lines."""
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = figure.add_subplot()
    s = axis.scale
    sized = [p for p in points if p.x > 0]
    for i, p in enumerate(points):
        color = f"C{i % 10}"
        if p.x > 0:
            ax.errorbar(p.x, p.mean * s, yerr=p.std * s, fmt="o", color=color, capsize=3, label=p.label)
            ax.annotate(p.label, (p.x, p.mean * s), textcoords="offset points", xytext=(5, 4), fontsize=8)
        else:
            ax.axhline(p.mean * s, color=color, linestyle=":", label=f"{p.label} (0 trainable)")
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
    ax.set_title(_wrapped(title, figure), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    _save(figure, path)


def fractions(panels: dict[str, dict[str, list[Point]]], axis: Axis, title: str, path: Path,
              examples: dict[str, int] | None = None) -> None:
    """One panel per entry of ``panels`` (task or suite mean), one line per method: mean ± std
    over seeds against the fraction of the training split (log x). ``examples`` gives a panel's
    full training-set size, for a second axis in examples."""
    figure = Figure(figsize=(5.2 * len(panels), 4.4), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    s = axis.scale
    for ax, (name, lines) in zip(axes, panels.items()):
        for i, (label, points) in enumerate(sorted(lines.items())):
            points = sorted(points, key=lambda p: p.x)
            xs, means = [p.x for p in points], [p.mean * s for p in points]
            low, high = [(p.mean - p.std) * s for p in points], [(p.mean + p.std) * s for p in points]
            if axis.lower_is_better:  # a band reaching zero has no place on a log axis
                low = [max(lo, m * 0.05) for lo, m in zip(low, means)]
            ax.plot(xs, means, marker="o", color=f"C{i % 10}", label=label)
            ax.fill_between(xs, low, high, color=f"C{i % 10}", alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        ticks = sorted({p.x for points in lines.values() for p in points})
        ax.xaxis.set_major_locator(FixedLocator(ticks))  # the fractions run, as percentages
        ax.xaxis.set_major_formatter(FuncFormatter(lambda f, _: f"{f * 100:.3g}%"))
        ax.xaxis.set_minor_locator(NullLocator())
        if axis.lower_is_better:
            ax.set_yscale("log")
        ax.set_xlabel("fraction of the training split (log scale)")
        ax.set_ylabel(axis.label)
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, title="mean ± std over seeds", title_fontsize=8)
        total = (examples or {}).get(name)
        if total:
            top = ax.secondary_xaxis("top", functions=(lambda f, n=total: f * n, lambda k, n=total: k / n))
            top.xaxis.set_major_locator(FixedLocator([f * total for f in ticks]))
            top.xaxis.set_major_formatter(FuncFormatter(lambda k, _: f"{k:,.0f}"))
            top.xaxis.set_minor_locator(NullLocator())
            top.set_xlabel("training examples", fontsize=8)
    figure.suptitle(_wrapped(title, figure), fontsize=11)
    _save(figure, path)
