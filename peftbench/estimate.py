"""What a sweep will cost on this device, told before it starts.

A few real training steps of each method (the recipe's backbone, image size, batch and precision,
on the task's own data) and a few scored batches give a step's and an example's time; they are
kept in the peftbench cache per device and backbone, so the next plan on that device times
nothing. A run then costs its steps (epochs x batches, each tune seed), its scoring (val after
every scored epoch, test and the merged model's speed in a final run) and its setup (copying and
adapting the backbone). Pruning only shortens trials, so the estimate errs long.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from . import compute, tuning
from .backbones.cache import cache_dir
from .budget import one_line
from .execute import MERGED_SPEED_EXAMPLES, out_of_memory
from .kinds import KINDS
from .loading import decodes
from .plan import Cell, Plan, first_n
from .records import Modality, Phase
from .train import TrainConfig

DAY = 24 * 3600
STEPS = 2  # timed training steps beyond the first, of each method (after one warm-up step)
CACHE_FILE = "step-times.json"
VERSION = 1  # of what a cached Cost means: a change times every method again


@dataclass(frozen=True)
class Cost:
    """One method's costs at a recipe on this device."""

    step_s: float  # a training step at the recipe's batch
    eval_s: float  # an example scored
    setup_s: float  # copying and adapting the backbone, and starting a loader: once a run
    eval_fixed_s: float = 0.0  # starting one scoring pass (its loader)
    peak_mb: float = 0.0  # training's peak memory, as the run records report it
    error: str | None = None  # it could not take a step: its runs will fail at once
    example_s: float = 0.0  # once a run per training example: a frozen backbone's features (the probe)


COST_FIELDS = {f.name for f in fields(Cost)}


@dataclass(frozen=True)
class Shape:
    """The recipe settings an override changes: what an estimate is computed at."""

    trials: int
    seeds: int
    epochs: int
    cap: int | None = None  # --max-train-examples

    @classmethod
    def of(cls, cell: Cell) -> Shape:
        recipe = cell.recipe
        return cls(recipe.trials, recipe.seeds, recipe.epochs)


# ---- timing steps ------------------------------------------------------------------------------

def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    from .envinfo import cpu_name

    return cpu_name()


def cost_key(cell: Cell, splits, device: str, threads: int | None) -> str:
    """What a step's time depends on; text tasks add the task (its sequence lengths)."""
    recipe = cell.recipe
    parts = [f"v{VERSION}", device, f"threads={threads or '-'}", f"torch={torch.__version__}", cell.backbone.name,
             f"image_size={recipe.image_size}", f"batch={recipe.batch_size}", recipe.precision,
             ",".join(recipe.targets or ()), cell.method.name, json.dumps(cell.sizing.size, sort_keys=True),
             cell.task.kind.value, "files" if decodes(splits.train) else "memory"]
    if cell.task.modality is Modality.TEXT:
        parts += [cell.task.id, f"max_length={recipe.max_length}", recipe.eval_mode]
    return "|".join(parts)


def _seconds(work) -> float:
    dev = compute.device()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    start = time.perf_counter()
    work()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - start


def _fixed_and_each(short: tuple[float, int], long: tuple[float, int]) -> tuple[float, float]:
    """(fixed, per item) from two timings of (seconds, items): a loader's start is paid once per pass."""
    (t1, n1), (t2, n2) = short, long
    each = (t2 - t1) / (n2 - n1) if n2 > n1 and t2 > t1 else t2 / n2
    return max(0.0, t2 - each * n2), each


def measure(cell: Cell, splits) -> Cost:
    """Time the cell's method as its runs train it: one warm-up step, then 1 and 1 + STEPS steps
    (their difference is the step; the rest is once a run), and scoring one and four batches."""
    if cell.error is not None:
        return Cost(0.0, 0.0, 0.0, error=cell.error)
    kind, recipe, batch = KINDS[cell.task.kind], cell.recipe, cell.recipe.batch_size
    hparams = tuning.defaults(cell.method, cell.has_head)
    frozen = not cell.method.trains_backbone and cell.sizing.count == 0
    features = frozen and cell.has_head  # the head trains on the frozen backbone's features (peftbench.kinds)
    config = TrainConfig(epochs=1, batch_size=batch, lr=hparams.get("lr", 0.0), head_lr=hparams.get("head_lr"),
                         weight_decay=hparams.get("weight_decay", 0.0), seed=0)
    try:
        with compute.precision(recipe.precision):
            start = time.perf_counter()
            torch.manual_seed(0)
            adapted = cell.method.apply(copy.deepcopy(cell.backbone), cell.sizing.size, hparams)
            model = kind.build(cell.task, cell.backbone, adapted)
            setup = time.perf_counter() - start
            peak = [0.0]

            def train(steps: int) -> tuple[float, int]:
                data = first_n(splits.train, steps * batch)
                stats = kind.train(model, cell.backbone, data, config, recipe, frozen=frozen, progress=False)
                peak[0] = max(peak[0], stats.peak_memory_mb)
                return stats.seconds, math.ceil(len(data) / batch)

            def score(batches: int) -> tuple[float, int]:
                data = first_n(splits.val, batches * batch)
                return _seconds(lambda: kind.score(model, cell.backbone, data, recipe, frozen=frozen)), len(data)

            train(1)  # warm-up: lazy initialisation, kernel choices
            loader_s, step_s = _fixed_and_each(train(1), train(1 + STEPS))
            eval_fixed_s, eval_s = _fixed_and_each(score(1), score(4))
            if features:  # computed once a run, as scoring computes them; the head's steps cost next to nothing
                return Cost(0.0, eval_s, setup + eval_fixed_s, eval_fixed_s, peak[0], example_s=eval_s)
    except Exception as exc:  # noqa: BLE001 - its runs will fail the same way; the plan says so
        reason = f"out of memory at batch {batch}" if out_of_memory(exc) else one_line(exc)
        return Cost(0.0, 0.0, 0.0, error=reason)
    finally:
        if compute.device().type == "cuda":
            torch.cuda.empty_cache()
    return Cost(step_s, eval_s, setup + loader_s, eval_fixed_s, peak[0])


def _cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(entries: dict) -> None:
    """Merged with what other processes wrote meanwhile; replaced in one step."""
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read_cache(), **entries}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:  # a read-only cache: the timings are measured again next time
        pass


def costs(plan: Plan, cells: list[Cell], threads: int | None, log=None) -> tuple[dict[str, Cost], dict[str, bool]]:
    """Each cell's Cost by study, from the cache or timed now (``log`` says so first); and which
    were timed now. ``threads``: the CPU threads each worker will have (None on a GPU)."""
    dev = compute.device()
    name = device_name(dev)
    cached = _read_cache()
    keys = {cell.study: cost_key(cell, plan.splits[cell.task.id], name, threads) for cell in cells}
    todo = {key: cell for cell in cells for key in [keys[cell.study]] if key not in cached}
    fresh = {}
    if todo:
        if log is not None:
            log(f"timing {len(todo)} method(s) on {name}: {1 + 1 + 1 + STEPS} training steps and a few scored "
                f"batches each (cached for the next plan)")
        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)  # as each worker will run
        try:
            for key, cell in todo.items():
                fresh[key] = measure(cell, plan.splits[cell.task.id])
        finally:
            torch.set_num_threads(before)
        _write_cache({key: cost.__dict__ for key, cost in fresh.items() if cost.error is None})
    found = {key: Cost(**{k: v for k, v in value.items() if k in COST_FIELDS})
             for key, value in cached.items() if key in keys.values()}
    found.update(fresh)
    return {study: found[key] for study, key in keys.items()}, {study: key in fresh for study, key in keys.items()}


# ---- the cost model ---------------------------------------------------------------------------

def _examples(n: int, fraction: float, cap: int | None = None) -> int:
    n = min(n, cap) if cap is not None else n
    return max(1, round(n * fraction)) if fraction < 1 else n


def _scoring(cost: Cost, examples: int) -> float:
    return cost.eval_fixed_s + examples * cost.eval_s


@functools.cache
def _scored_epochs(trials: int, epochs: int) -> int:
    """Epochs after which a trial scores val: the last, and those where the pruner can act."""
    return sum(1 for e in range(epochs) if e == epochs - 1 or tuning.may_prune(trials, e))


def unit_parts(cell: Cell, phase: Phase, cost: Cost, splits, shape: Shape | None = None
               ) -> tuple[float, float, float]:
    """One run's (setup, training, scoring) seconds: a trial (every tune seed, val after each
    scored epoch) or a final run (test, and the merged model's speed)."""
    if cost.error is not None:
        return 0.0, 0.0, 0.0
    shape = shape or Shape.of(cell)
    recipe = cell.recipe
    split = splits.train if phase is Phase.TUNE else splits.trainval
    examples = _examples(len(split), cell.fraction, shape.cap)
    drawn = max(examples, recipe.epoch_samples or 0)
    steps = shape.epochs * math.ceil(drawn / recipe.batch_size) * cost.step_s + examples * cost.example_s
    if phase is Phase.TUNE:
        seeds = recipe.tune_seeds
        scored = _scored_epochs(shape.trials, shape.epochs)
        return seeds * cost.setup_s, seeds * steps, (scored + seeds - 1) * _scoring(cost, len(splits.val))
    scoring = _scoring(cost, len(splits.test))
    setup = cost.setup_s
    if cell.method.mergeable:
        setup += cost.setup_s
        scoring += _scoring(cost, min(MERGED_SPEED_EXAMPLES, len(splits.test)))
    return setup, steps, scoring


def _runs(cell: Cell, shape: Shape, left: set[str] | None) -> list[tuple[Phase, int]]:
    """The cell's runs: all of them at ``shape``, or those of its units still ``left``."""
    if left is None:
        return [(Phase.TUNE, i) for i in range(shape.trials)] + [(Phase.FINAL, s) for s in range(shape.seeds)]
    return [(unit.phase, unit.index) for unit in cell.units() if unit.key in left]


def critical_path(free: list[float], dependent: list[float], finals: list[float]) -> float:
    """A cell's runs that wait for each other: its independent trials side by side, then the
    trials that wait for the slots before them one by one, then its final runs side by side."""
    return max(free, default=0.0) + sum(dependent) + max(finals, default=0.0)


@dataclass(frozen=True)
class Estimate:
    seconds: float  # wall time, starting and planning included
    training_s: float  # summed over runs, as are the next two
    scoring_s: float
    setup_s: float
    startup_s: float  # starting and planning, each worker
    peak_mb: float
    peak_method: str | None


def estimate(plan: Plan, left: set[str] | None, found: dict[str, Cost], workers: int, startup_s: float,
             shape: dict[str, Shape] | None = None) -> Estimate:
    """The wall time of the runs ``left`` (unit keys; None: every run) shared by ``workers``: their
    total divided among the workers, or a cell's critical path if longer, plus starting and
    planning (again in each worker, where there are several). ``shape`` (study -> Shape) gives the
    sweep as overrides would make it."""
    parts, longest = [0.0, 0.0, 0.0], 0.0
    for cell in plan.cells:
        cost = found.get(cell.study)
        if cost is None or cost.error is not None:
            continue
        at = (shape or {}).get(cell.study, Shape.of(cell))
        free, dependent, finals = [], [], []
        for phase, index in _runs(cell, at, left):
            seconds = unit_parts(cell, phase, cost, plan.splits[cell.task.id], at)
            parts = [a + b for a, b in zip(parts, seconds)]
            if phase is Phase.FINAL:
                finals.append(sum(seconds))
            else:
                (free if tuning.independent(index, at.trials) else dependent).append(sum(seconds))
        longest = max(longest, critical_path(free, dependent, finals))
    setup, training, scoring = parts
    fixed = startup_s * (2 if workers > 1 else 1)
    busy = max((setup + training + scoring) / max(workers, 1), longest)
    worst = max(((c.peak_mb, study) for study, c in found.items() if c.error is None), default=(0.0, None))
    method = next((cell.method.name for cell in plan.cells if cell.study == worst[1]), None)
    return Estimate(busy + fixed, training, scoring, setup, fixed, worst[0], method)


# ---- overrides that make a sweep fit ------------------------------------------------------------

def _largest(fits, low: int, high: int) -> int | None:
    """The largest value in [low, high] where ``fits`` holds (it holds below any value it holds at)."""
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def fitting_overrides(plan: Plan, found: dict[str, Cost], workers: int, startup_s: float,
                      limit: float = DAY) -> list[str]:
    """Overrides, each alone, that bring the whole sweep within ``limit`` seconds; where none alone
    does, the first combination of them (trials, then seeds, epochs, the training cap) that does."""
    cells = plan.cells
    base = {cell.study: Shape.of(cell) for cell in cells}

    def seconds(change) -> float:
        shapes = {study: replace(shape, **change(shape)) for study, shape in base.items()}
        return estimate(plan, None, found, workers, startup_s, shapes).seconds

    def fits(change) -> bool:
        return seconds(change) <= limit

    trials = max(s.trials for s in base.values())
    seeds = max(s.seeds for s in base.values())
    epochs = max(s.epochs for s in base.values())
    examples = max(len(plan.splits[cell.task.id].trainval) for cell in cells)
    batch = min(cell.recipe.batch_size for cell in cells)
    found_ = {
        "--trials": _largest(lambda t: fits(lambda s: {"trials": t}), 0, trials - 1),
        "--seeds": _largest(lambda n: fits(lambda s: {"seeds": n}), 1, seeds - 1),
        "--epochs": _largest(lambda e: fits(lambda s: {"epochs": e}), 1, epochs - 1),
        "--max-train-examples": _largest(lambda c: fits(lambda s: {"cap": c}), batch, examples - 1),
    }
    out = [f"{flag} {value}" for flag, value in found_.items() if value is not None]
    tasks = _fitting_tasks(plan, found, workers, startup_s, limit)
    if tasks:
        out.append(f"--tasks {','.join(tasks)}")
    if out:
        return out
    combined = {"trials": 0, "seeds": 1}
    if not fits(lambda s: combined):
        combined["epochs"] = _largest(lambda e: fits(lambda s: {**combined, "epochs": e}), 1, epochs) or 1
    if not fits(lambda s: combined):
        cap = _largest(lambda c: fits(lambda s: {**combined, "cap": c}), batch, examples)
        if cap is None:
            return []
        combined["cap"] = cap
    flags = {"trials": "--trials", "seeds": "--seeds", "epochs": "--epochs", "cap": "--max-train-examples"}
    return [" ".join(f"{flags[k]} {v}" for k, v in combined.items())]


def _fitting_tasks(plan: Plan, found: dict[str, Cost], workers: int, startup_s: float, limit: float) -> list[str]:
    """The first tasks, in the plan's order, that fit within ``limit`` together (none if all do, or one does not)."""
    order = list(dict.fromkeys(cell.task.id for cell in plan.cells))
    chosen = []
    for task in order:
        cells = [cell for cell in plan.cells if cell.task.id in {*chosen, task}]
        part = Plan(cells, plan.splits)
        shapes = {cell.study: Shape.of(cell) for cell in cells}
        if estimate(part, None, found, workers, startup_s, shapes).seconds > limit:
            break
        chosen.append(task)
    return chosen if 0 < len(chosen) < len(order) else []
