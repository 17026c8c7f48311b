"""Planning a sweep: resolve methods, tasks and the budget, load backbones and splits, size every
method, and list the units of work. Bad input fails here, before any run or store write."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

from torch.utils.data import Subset

from . import hubdata, registry, tuning
from .backbones import Backbone, check_backbone_name, load_backbone
from .backbones.base import TARGET_ROLES
from .budget import FIXED, Sizing, budget_params, one_line, parse_budgets, solve
from .compute import resolve_precision
from .data import label_tensor, stand_in_splits
from .errors import UsageError, did_you_mean
from .kinds import KINDS
from .method import Method
from .recipe import Recipe
from .records import Modality, Phase
from .spec import parse_specs
from .task import Splits, Suite, Task, resolve_tasks

#: the recipe settings the command line can override (RunOptions fields of the same names)
OVERRIDABLE = ("backbone", "epochs", "batch_size", "image_size", "max_train_examples", "max_eval_examples",
               "eval_mode", "trials", "seeds", "targets", "precision", "epoch_samples")


def resolve_methods(spec: str, allow_broken: bool = False) -> dict[str, Method]:
    """The named methods and variants (``hora[share=none]``), by their full names; a plugin that
    failed to load is bad input unless ``allow_broken``, where it stands in as a method whose
    every run fails with the reason."""
    found = registry.methods()
    chosen = {}
    for item in parse_specs(spec):
        if item.name in found.broken:
            if not allow_broken:
                raise UsageError(f"method plugin '{item.name}' failed to load: {found.broken[item.name]}")
            chosen[item.name] = BrokenMethod(item.name, found.broken[item.name])
            continue
        registry.known_method(item.name)
        method = found.loaded[item.name]()
        method = method.variant(item.options) if item.options else method
        chosen[method.name] = method
    if not chosen:
        raise UsageError("no methods given (--methods lora,hora)")
    return chosen


def suites() -> dict[str, Suite]:
    return dict(registry.tasks().loaded)


@dataclass(frozen=True)
class Cell:
    """A method on a task at the budget: one Optuna study, one cell of the leaderboard."""

    task: Task
    method: Method
    backbone: Backbone
    sizing: Sizing
    recipe: Recipe
    budget: str
    fraction: float = 1.0
    error: str | None = None  # the method's plugin failed while sizing itself: every run fails with this

    @property
    def settings(self) -> dict:
        return self.recipe.settings()

    @property
    def has_head(self) -> bool:
        return KINDS[self.task.kind].has_head

    @property
    def study(self) -> str:
        """The Optuna study's name; a fraction of the data is a comparison of its own."""
        return tuning.study_name(self.task.id, self.method.name, self.budget, self.backbone.name,
                                 self.fraction, self.settings)

    def units(self) -> list[Unit]:
        return ([Unit(self, Phase.TUNE, slot) for slot in range(self.recipe.trials)]
                + [Unit(self, Phase.FINAL, seed) for seed in range(self.recipe.seeds)])

    def tune_keys(self) -> set[str]:
        return {unit.key for unit in self.units() if unit.phase is Phase.TUNE}


@dataclass(frozen=True)
class Unit:
    """A tuning slot (index = slot) or a final run (index = seed)."""

    cell: Cell
    phase: Phase
    index: int

    @property
    def key(self) -> str:
        """The same unit asked for again gets the same key, whatever its outcome."""
        spec = {"study": self.cell.study, "size": self.cell.sizing.size, "phase": self.phase.value,
                "index": self.index}
        if self.phase is Phase.FINAL:  # a final run follows from all the trials before it
            spec["trials"] = self.cell.recipe.trials
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

    def __str__(self) -> str:
        trials = self.cell.recipe.trials
        which = f"trial {self.index + 1}/{trials}" if self.phase is Phase.TUNE else f"seed {self.index}"
        share = f" at {self.cell.fraction:g} of train" if self.cell.fraction < 1 else ""
        return f"{self.cell.task.id} {self.cell.method.name}{share} {which}"


@dataclass(frozen=True)
class Plan:
    cells: list[Cell]
    splits: dict[str, Splits]  # task id -> its splits, capped as the recipe says
    #: (suite, task) whose data is still to be downloaded: their splits are blank stand-ins
    to_fetch: tuple[tuple[str, str], ...] = ()
    #: a method's refusal of a backbone or budget -> the tasks whose cells it skipped
    skipped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: why a task plugin failed to load its data: every run of the task fails with it
    unloadable: tuple[str, ...] = ()

    def units(self) -> list[Unit]:
        """Task by task (and fraction by fraction): every method's trials, then every final run.
        Finals come in a batch, so parallel workers find several ready at once and finish together,
        instead of one worker running the last cell's final alone after its trials."""
        groups: dict[tuple, list[Cell]] = {}
        for cell in self.cells:
            groups.setdefault((cell.task.id, cell.fraction), []).append(cell)
        return [unit for cells in groups.values() for phase in (Phase.TUNE, Phase.FINAL)
                for cell in cells for unit in cell.units() if unit.phase is phase]


def with_targets(backbone: Backbone, targets) -> Backbone:
    """The backbone with the recipe's target roles (None: its family's default), checked against its layout."""
    roles = tuple(targets or backbone.target_roles)
    unknown = [role for role in roles if role not in TARGET_ROLES]
    if unknown:
        raise UsageError(f"unknown target '{unknown[0]}'{did_you_mean(unknown[0], TARGET_ROLES)} "
                         f"(targets are roles: {', '.join(TARGET_ROLES)})")
    missing = [role for role in roles if not any(backbone.layout.modules(role))]
    if missing:
        raise UsageError(f"{backbone.name} has no '{missing[0]}' projection to adapt")
    return replace(backbone, targets=roles)


class Refusal(UsageError):
    """A method declines a backbone (its ``check()``) or a budget (too small for it): that cell is
    skipped and the other methods run; only when nothing is left to run is it the user's error."""


def size_method(method: Method, backbone: Backbone, target: int) -> tuple[Sizing, str | None]:
    """The method's size at the budget; a plugin whose check(), sizes() or count() raises (anything
    but a UsageError, which is its refusal) gets a placeholder and the reason, so its runs fail while
    the other methods run."""
    try:
        method.check(backbone)
        return solve(method, backbone, target), None
    except UsageError as exc:
        reason = str(exc)
        raise Refusal(reason if method.name in reason else f"{method.name}: {reason}") from exc
    except Exception as exc:
        return Sizing({}, 0, target), f"{method.name} could not size itself: {one_line(exc)}"


def load_task(task: Task, recipe, backbone: Backbone, data_root) -> tuple[Splits, str | None]:
    """The task's splits, checked against its class count. A UsageError is the user's input (a
    data root, a missing download): it stops the command. Anything else the task plugin raises is
    that task's fault: its runs fail with the reason and the other tasks run."""
    try:
        splits = task.load(recipe.image_size, backbone.mean, backbone.std, data_root)
        if KINDS[task.kind].has_head:
            check_labels(task, splits)
        return splits, None
    except UsageError as exc:
        if task.id in str(exc):
            raise
        raise UsageError(f"{task.id}: {exc}") from exc
    except Exception as exc:
        return Splits([], [], [], []), f"task {task.id} failed to load: {one_line(exc)}"


def check_labels(task: Task, splits: Splits) -> None:
    """Labels outside 0..num_classes-1 would fail every run with an index error naming neither."""
    for name in ("train", "val", "trainval", "test"):
        labels = label_tensor(getattr(splits, name))
        if labels is not None and len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < task.num_classes:
            bad = int(labels.max()) if labels.max() >= task.num_classes else int(labels.min())
            raise ValueError(f"its {name} split has label {bad}, outside its {task.num_classes} classes "
                             f"(0..{task.num_classes - 1})")


def first_n(data, n: int):
    """The first n examples: splits come shuffled with a fixed seed, so this is a fixed subset."""
    return data[:n] if isinstance(data, (list, tuple)) else Subset(data, range(min(n, len(data))))


def capped(splits: Splits, recipe: Recipe) -> Splits:
    if recipe.max_train_examples is not None:
        cap = recipe.max_train_examples
        splits = replace(splits, train=first_n(splits.train, cap), trainval=first_n(splits.trainval, cap))
    if recipe.max_eval_examples is not None:
        cap = recipe.max_eval_examples
        splits = replace(splits, val=first_n(splits.val, cap), test=first_n(splits.test, cap))
    return splits


class BrokenMethod(Method):
    """Stands in for a method plugin that failed to load: each of its runs fails with the reason."""

    knobs = ()

    def __init__(self, name: str, reason: str):
        self.name, self.reason, self.description = name, reason, f"BROKEN: {reason}"

    def sizes(self, backbone):
        return [{}]

    def count(self, backbone, size):
        return 0

    def apply(self, backbone, size, hparams):
        raise RuntimeError(f"method plugin '{self.name}' failed to load: {self.reason}")


class Planner:
    """Validates a sweep's choices up front, then loads what it needs and lists its cells."""

    def __init__(self, methods: str, tasks: str, options):
        registry.check_names(methods, tasks, options.budget)  # before loading any plugin: bad names fail at once
        self.methods = resolve_methods(methods, allow_broken=True)
        self.tasks = resolve_tasks(tasks, suites(), registry.tasks().broken)
        self.budgets = parse_budgets(options.budget)
        references = ",".join(dict.fromkeys(b.method for b in self.budgets if b.method))
        self.reference = resolve_methods(references) if references else {}
        self.options = options
        for suite, task in self.tasks:
            recipe = self.recipe(suite)
            check_backbone_name(recipe.backbone, recipe.image_size)
            if task.needs_data_root and options.data_root is None:  # say so before loading any model
                raise UsageError(f"{task.id} needs --data-root DIR holding the {suite.name} data "
                                 f"(the layouts are in docs/suites.md)")
        self.check_flags()
        self._backbones: dict[tuple, Backbone] = {}

    def broken(self) -> list[BrokenMethod]:
        return [m for m in self.methods.values() if isinstance(m, BrokenMethod)]

    def check_flags(self) -> None:
        """Options that only one modality reads are an error when no task of it is asked for."""
        modalities = {task.modality for _, task in self.tasks}
        for option, modality in (("eval_mode", Modality.TEXT), ("image_size", Modality.IMAGE)):
            if getattr(self.options, option) is not None and modality not in modalities:
                flag = "--" + option.replace("_", "-")
                raise UsageError(f"{flag} applies to {modality.value} tasks only, and {self.tasks[0][1].id} is "
                                 f"{'an image' if modality is Modality.TEXT else 'a text'} task")

    def recipe(self, suite: Suite) -> Recipe:
        """The suite's recipe with the command line's overrides."""
        overrides = {k: getattr(self.options, k) for k in OVERRIDABLE}
        return Recipe.build(suite.name, suite.recipe, overrides)

    def backbone(self, name: str, image_size: int | None) -> Backbone:
        key = (name, image_size)
        if key not in self._backbones:
            self._backbones[key] = load_backbone(name, image_size)
        return self._backbones[key]

    def plan(self, stand_ins: bool = False) -> Plan:
        """Size every method for every task first: a budget or backbone a method cannot handle is
        bad input, reported before the first run starts. ``stand_ins``: a task whose data is still to
        be downloaded gets blank splits of its sizes, so the plan comes before the download."""
        cells, splits, missing, skipped, unloadable = [], {}, [], {}, []
        for suite, task in self.tasks:
            recipe = self.recipe(suite)
            backbone = with_targets(self.backbone(recipe.backbone, recipe.image_size), recipe.targets)
            precision = resolve_precision(recipe.precision)
            recipe = recipe.resolved(backbone.target_roles, precision)  # as it runs, and is recorded
            if task.modality != backbone.modality:
                raise UsageError(f"task {task.id} takes {task.modality} input, but {backbone.name} is "
                                 f"{'an' if backbone.modality is Modality.IMAGE else 'a'} {backbone.modality} model")
            failed = None
            if stand_ins and hubdata.to_fetch(suite.name, task.name, self.options.data_root):
                missing.append((suite.name, task.name))
                sizes = hubdata.expected_sizes(suite.name, task.name)
                loaded = stand_in_splits(sizes, task.num_classes, recipe.image_size, backbone.mean, backbone.std)
            else:
                loaded, failed = load_task(task, recipe, backbone, self.options.data_root)
                unloadable += [failed] if failed else []
            splits[task.id] = capped(loaded, recipe)
            targets = [(budget.text, budget_params(budget, backbone, self.reference)) for budget in self.budgets]
            for method in self.methods.values():
                # a fixed-size method (linear, full) is one reference point, whatever the budgets
                for text, target in targets if method.knobs else [(FIXED, 0)]:
                    try:
                        sizing, error = size_method(method, backbone, target)
                    except Refusal as exc:
                        skipped.setdefault(str(exc), {})[task.id] = None  # once per task, whatever the budgets
                        continue
                    cells += [Cell(task, method, backbone, sizing, recipe, text, fraction, failed or error)
                              for fraction in self.options.fractions]
        if skipped and not cells:
            raise UsageError(next(iter(skipped)))  # nothing left to run: the refusal is the answer
        return Plan(cells, splits, tuple(missing), {why: tuple(tasks) for why, tasks in skipped.items()},
                    tuple(unloadable))
