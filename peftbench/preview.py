"""The plan ``peftbench run`` prints before any training: suites and recipes, runs, workers, and
the estimated wall time and peak memory on this device (peftbench.estimate), with the overrides
that make a sweep of more than a day fit in one."""

from __future__ import annotations

import os
import sys

import torch

from . import compute
from .budget import FIXED
from .estimate import DAY, Cost, costs, device_name, estimate, fitting_overrides
from .plan import Plan
from .workers import threads

#: set to 0 to print the plan without timing any step (the tests do)
ESTIMATE_ENV = "PEFTBENCH_ESTIMATE"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    if seconds < DAY:
        return f"{int(seconds // 3600)} h {seconds % 3600 / 60:.0f} min"
    return f"{seconds / DAY:.1f} days"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def suite_lines(plan: Plan) -> list[str]:
    """Per suite: tasks x methods (x budgets x fractions), its runs, and the recipe they run."""
    lines = []
    for suite in dict.fromkeys(cell.task.suite for cell in plan.cells):
        cells = [cell for cell in plan.cells if cell.task.suite == suite]
        recipe = cells[0].recipe
        axes = [_count(len({c.task.id for c in cells}), "task"), _count(len({c.method.name for c in cells}), "method")]
        budgets, fractions = {c.budget for c in cells} - {FIXED}, {c.fraction for c in cells}
        axes += [_count(len(budgets), "budget")] if len(budgets) > 1 else []
        axes += [_count(len(fractions), "fraction")] if len(fractions) > 1 else []
        runs = sum(len(cell.units()) for cell in cells)
        size = f" at {recipe.image_size} px" if cells[0].task.modality == "image" and recipe.image_size else ""
        lines.append(f"  {suite}: {' x '.join(axes)} x ({_count(recipe.trials, 'trial')} + "
                     f"{_count(recipe.seeds, 'seed')}) = {_count(runs, 'run')}; {cells[0].backbone.name}{size}, "
                     f"batch {recipe.batch_size}, {_count(recipe.epochs, 'epoch')}, {recipe.precision}, "
                     f"targets {','.join(recipe.targets or ())}")
    return lines


def _where(workers: int) -> str:
    dev = compute.device()
    text = f"on {device_name(dev)}: {_count(workers, 'worker')}"
    if dev.type == "cuda":
        return text + (", one per GPU" if 1 < workers <= torch.cuda.device_count() else "")
    if workers > 1:
        return text + f" of {_count(threads(workers, os.cpu_count() or 1), 'thread')} each"
    return text + f", {_count(torch.get_num_threads(), 'thread')}"


def _cost_line(name: str, cost: Cost, timed_now: bool) -> str:
    if cost.error is not None:
        return f"  {name}: no step taken ({cost.error}): its runs will fail"
    return (f"  {name}: {cost.step_s:.3g} s a training step, {1000 * cost.eval_s:.3g} ms an example scored, "
            f"{cost.setup_s:.2g} s setup a run, peak {cost.peak_mb:,.0f} MB ({'timed now' if timed_now else 'cached'})")


def download_line(to_fetch: tuple[tuple[str, str], ...]) -> str:
    """What the run downloads before it trains, from the hub's own sizes."""
    from . import hubdata, hubfetch

    files = dict.fromkeys(pair for suite, task in to_fetch for pair in hubdata.files_for(suite, task))
    size = sum(hubfetch.describe(repo, file)[1].size for repo, file in files)
    names = ", ".join(f"{repo}/{file}" for repo, file in files)
    return (f"first downloads {size / 1e9:.1f} GB ({names}) into {hubdata.data_dir()}, for "
            f"{_count(len(to_fetch), 'task')}; the estimate times blank images of their split sizes")


def show_plan(plan: Plan, left: set[str], workers: int, startup_s: float, done: int = 0, resume: bool = True,
              out=None) -> None:
    """Print the plan and, unless PEFTBENCH_ESTIMATE=0, its estimate; to standard error."""
    out = out or sys.stderr

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    total = len(plan.units())
    already = f", {done} already in the store" if done else ""
    say(f"plan: {_count(total, 'run')}{already}, {len(left)} to run")
    for line in suite_lines(plan):
        say(line)
    if plan.to_fetch:
        say(f"  {download_line(plan.to_fetch)}")
    for why, tasks in plan.skipped.items():
        say(f"  skipped: {why} ({_count(len(tasks), 'task')}; the other methods run)")
    for why in plan.unloadable:
        say(f"  {why}: its runs are recorded as failed")
    if done and not resume:
        say("  the store already holds runs of this sweep: running it needs --resume")
    say(f"  {_where(workers)}")
    if not left or os.environ.get(ESTIMATE_ENV, "1") == "0":
        return
    dev = compute.device()
    cells = [cell for cell in plan.cells if any(unit.key in left for unit in cell.units())]
    each = None  # a GPU's step does not depend on the CPU threads
    if dev.type == "cpu":
        each = threads(workers, os.cpu_count() or 1) if workers > 1 else torch.get_num_threads()
    found, fresh = costs(plan, cells, each, log=lambda text: say(f"  {text}"))
    shown = set()
    for cell in cells:
        name = f"{cell.method.name} ({', '.join(f'{k}={v}' for k, v in cell.sizing.size.items()) or 'fixed'})"
        label = f"{cell.task.id} {name}" if cell.task.modality == "text" else f"{cell.task.suite} {name}"
        if label not in shown:
            shown.add(label)
            say(_cost_line(label, found[cell.study], fresh[cell.study]))
    guess = estimate(plan, left, found, workers, startup_s)
    memory = "GPU memory" if dev.type == "cuda" else "memory"
    say(f"estimate: {duration(guess.seconds)} wall (over all runs: training {duration(guess.training_s)}, scoring "
        f"{duration(guess.scoring_s)}, setup {duration(guess.setup_s)}; starting {duration(guess.startup_s)}), "
        f"peak {memory} {guess.peak_mb:,.0f} MB a worker" + (f" ({guess.peak_method})" if guess.peak_method else ""))
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if dev.type == "cpu" and load > cores:
        say(f"  this machine is busy (load {load:.1f} on {_count(cores, 'core')}): the estimate holds while the load "
            f"stays as it was when the steps were timed")
    if guess.seconds > DAY:
        fits = fitting_overrides(plan, found, workers, startup_s)
        advice = (f"each of these makes it fit: {'; '.join(fits)}" if len(fits) > 1
                  else f"this makes it fit: {fits[0]}" if fits else "no override of trials, seeds, epochs, "
                  "training examples or tasks makes it fit on this device")
        say(f"the estimate exceeds a day; {advice} (the run starts anyway; --dry-run prints the plan alone)")
