"""One comparison: every (task, method) cell is tuned with Optuna, then run with several seeds.

A cell's units of work are its tuning slots (one Optuna trial each: train -> val, pruned on
val) and its final runs (the configuration that scored best on val, retrained on train+val
with each seed and tested once). Each unit becomes one record in the results store when it
ends. Workers sharing a store claim units (peftbench.claims), so none runs one twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from torch.utils.data import Subset

from . import registry, tuning
from .artifacts import save_trained
from .backbones import Backbone, check_backbone_name, load_backbone
from .backbones.base import TARGET_ROLES
from .budget import Budget, Sizing, budget_params, one_line, parse_budget, solve
from .claims import Claims, Outcome
from .contracts import Probe, check_count, trainable
from .envinfo import environment
from .errors import OutOfMemory, UsageError
from .fractions import nested_subset
from .kinds import KINDS
from .merging import merged_copy
from .method import Method
from .store import Store
from .task import Splits, Suite, Task, resolve_tasks
from .train import TrainConfig, device

DEFAULT_BUDGET = "lora:r=8"
DEFAULT_RECIPE = {"backbone": "dinov2-s", "image_size": 56, "epochs": 5, "batch_size": 32,
                  "max_train_examples": None, "max_eval_examples": None, "max_length": 256,
                  "eval_mode": "loglik", "trials": 10, "seeds": 3, "targets": None}
OVERRIDABLE = ("backbone", "epochs", "batch_size", "image_size", "max_train_examples", "max_eval_examples",
               "eval_mode", "trials", "seeds", "targets")
#: how long a worker waits before looking again at units other workers hold
POLL_SECONDS = 2.0
MERGED_SPEED_EXAMPLES = 256
TUNE_SEED = 0  # every trial sees the same initialisation and data order: only the configuration differs


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices; None means the suite's recipe decides."""

    backbone: str | None = None
    budget: str = DEFAULT_BUDGET
    seeds: int | None = None
    trials: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    image_size: int | None = None
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    eval_mode: str | None = None
    targets: tuple[str, ...] | None = None  # the modules every method adapts, by role (q, v, ...)
    data_root: str | None = None
    fractions: tuple[float, ...] = (1.0,)
    adapters_dir: str | None = None  # where final runs save their trained tensors
    resume: bool = False
    progress: bool = True


def resolve_methods(spec: str, allow_broken: bool = False) -> dict[str, Method]:
    """The named methods; a plugin that failed to load is bad input unless ``allow_broken``,
    where it stands in as a method whose every run fails with the reason."""
    found = registry.methods()
    chosen = {}
    for name in filter(None, (part.strip() for part in spec.split(","))):
        if name in found.broken:
            if not allow_broken:
                raise UsageError(f"method plugin '{name}' failed to load: {found.broken[name]}")
            chosen[name] = BrokenMethod(name, found.broken[name])
            continue
        if name not in found.loaded:
            raise UsageError(f"unknown method '{name}' (available: {', '.join(sorted(found.loaded))})")
        chosen[name] = found.loaded[name]()
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
    settings: dict
    budget: str
    fraction: float = 1.0
    error: str | None = None  # the method's plugin failed while sizing itself: every run fails with this

    @property
    def study(self) -> str:
        """The Optuna study's name; a fraction of the data is a comparison of its own."""
        return tuning.study_name(self.task.id, self.method.name, self.budget, self.backbone.name,
                                 self.fraction, self.settings)

    @property
    def has_head(self) -> bool:
        return KINDS[self.task.kind].has_head

    def units(self) -> list[Unit]:
        return ([Unit(self, "tune", slot) for slot in range(self.settings["trials"])]
                + [Unit(self, "final", seed) for seed in range(self.settings["seeds"])])

    def tune_keys(self) -> set[str]:
        return {unit.key for unit in self.units() if unit.phase == "tune"}


@dataclass(frozen=True)
class Unit:
    """A tuning slot (index = slot) or a final run (index = seed)."""

    cell: Cell
    phase: str
    index: int

    @property
    def key(self) -> str:
        """The same unit asked for again gets the same key, whatever its outcome."""
        spec = {"study": self.cell.study, "size": self.cell.sizing.size, "phase": self.phase, "index": self.index}
        if self.phase == "final":  # a final run follows from all the trials before it
            spec["trials"] = self.cell.settings["trials"]
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

    def __str__(self) -> str:
        trials = self.cell.settings["trials"]
        which = f"trial {self.index + 1}/{trials}" if self.phase == "tune" else f"seed {self.index}"
        share = f" at {self.cell.fraction:g} of train" if self.cell.fraction < 1 else ""
        return f"{self.cell.task.id} {self.cell.method.name}{share} {which}"


class Sweep:
    """Runs the cells' units, writing each finished one to the store."""

    def __init__(self, methods: str, tasks: str, options: RunOptions):
        """Validate every choice up front, so bad input fails before any work or write."""
        self.methods = resolve_methods(methods, allow_broken=True)
        self.tasks = resolve_tasks(tasks, suites(), registry.tasks().broken)
        self.budget: Budget = parse_budget(options.budget)
        self.reference = resolve_methods(self.budget.method) if self.budget.method else {}
        self.options = options
        for suite, task in self.tasks:
            check_backbone_name(self.settings(suite)["backbone"])
            if task.needs_data_root and options.data_root is None:  # say so before loading any model
                raise UsageError(f"{task.id} needs --data-root DIR holding the {suite.name} data "
                                 f"(the layouts are in README.md, 'Task suites')")
        self.check_flags()
        for method in self.methods.values():
            if isinstance(method, BrokenMethod):
                print(f"peftbench: warning: method plugin '{method.name}' failed to load ({method.reason}); "
                      f"its runs are recorded as failed", file=sys.stderr)
        self.env = environment()
        self._backbones: dict[tuple, Backbone] = {}
        self._studies: dict[str, optuna.Study] = {}
        self.splits: dict[str, Splits] = {}

    def check_flags(self) -> None:
        """Options that only one modality reads are an error when no task of it is asked for."""
        modalities = {task.modality for _, task in self.tasks}
        for option, modality in (("eval_mode", "text"), ("image_size", "image")):
            if getattr(self.options, option) is not None and modality not in modalities:
                flag = "--" + option.replace("_", "-")
                raise UsageError(f"{flag} applies to {modality} tasks only, and {self.tasks[0][1].id} is "
                                 f"{'an image' if modality == 'text' else 'a text'} task")

    def settings(self, suite: Suite) -> dict:
        """The suite's recipe with the command line's overrides, which are listed too."""
        settings = {**DEFAULT_RECIPE, **suite.recipe}
        overrides = {k: getattr(self.options, k) for k in OVERRIDABLE if getattr(self.options, k) is not None}
        return {**settings, **overrides, "overrides": sorted(overrides)}

    def backbone(self, name: str, image_size: int) -> Backbone:
        key = (name, image_size)
        if key not in self._backbones:
            self._backbones[key] = load_backbone(name, image_size)
        return self._backbones[key]

    def plan(self) -> list[Cell]:
        """Size every method for every task first: a budget or backbone a method cannot
        handle is bad input, reported before the first run starts."""
        cells = []
        for suite, task in self.tasks:
            settings = self.settings(suite)
            backbone = with_targets(self.backbone(settings["backbone"], settings["image_size"]), settings["targets"])
            settings = {**settings, "targets": list(backbone.target_roles)}  # recorded with every run
            if task.modality != backbone.modality:
                raise UsageError(f"task {task.id} takes {task.modality} input, but {backbone.name} is a "
                                 f"{backbone.modality} model")
            self.splits[task.id] = self.load_splits(task, backbone, settings)
            target = budget_params(self.budget, backbone, self.reference)
            for method in self.methods.values():
                sizing, error = size_method(method, backbone, target)
                cells += [Cell(task, method, backbone, sizing, settings, self.budget.text, fraction, error)
                          for fraction in self.options.fractions]
        return cells

    def run(self, store: Store, cells: list[Cell] | None = None) -> list[dict]:
        """Run every unit not yet in the store; units other workers hold are waited for."""
        cells = self.plan() if cells is None else cells
        units = [unit for cell in cells for unit in cell.units()]
        done = store.finished()
        held = sum(unit.key in done for unit in units)
        if held and not self.options.resume:
            raise UsageError(f"the store already holds {held} of this sweep's {len(units)} runs: "
                             f"pass --resume to continue the sweep, or --store for a new one")
        claims = Claims(store)
        records, pending = [], [unit for unit in units if unit.key not in done]
        done_before = len(units) - len(pending)
        while pending:
            waiting = []
            for unit in pending:
                if unit.phase == "final" and not all(map(store.has, unit.cell.tune_keys())):
                    waiting.append(unit)  # its study is not finished yet (another worker's trials)
                    continue
                outcome, abandoned_trial = claims.claim(unit.key)
                if outcome is Outcome.BUSY:
                    waiting.append(unit)
                elif outcome is Outcome.CLAIMED:
                    records.append(self.execute(unit, store, claims, abandoned_trial))
                    self.report(records[-1], unit, done_before + len(records), len(units))
            still = [unit for unit in waiting if not store.has(unit.key)]
            if still and len(still) == len(pending):
                time.sleep(POLL_SECONDS)
            pending = still
        return records

    def report(self, record: dict, unit: Unit, number: int, total: int) -> None:
        if record["status"] == "ok":
            value = record["test_metric"] if unit.phase == "final" else record["val_metric"]
            outcome = f"{'test' if unit.phase == 'final' else 'val'} {record['metric']} {value:.4g}"
        else:
            outcome = f"{record['status']}: {record['error']}"
        print(f"[{number}/{total}] {unit}: {outcome}", file=sys.stderr, flush=True)

    def execute(self, unit: Unit, store: Store, claims: Claims, abandoned_trial: int | None) -> dict:
        """Run one claimed unit and store its record, which releases the claim."""
        study = trial = None
        try:
            with claims.heartbeat(unit.key):
                if unit.phase == "tune":
                    study = self.study(unit.cell, store)
                    tuning.fail_abandoned(study, abandoned_trial)
                    trial = tuning.ask(study, unit.cell.study, unit.index, unit.cell.settings["trials"],
                                       tuning.defaults(unit.cell.method, unit.cell.has_head))
                    claims.note_trial(unit.key, trial.number)
                    record = self.tune(unit, trial)
                else:
                    record = self.final(unit, store)
        except BaseException:  # interrupted (Ctrl-C, bad input): the unit stays to be run again
            claims.release(unit.key)
            if trial is not None:
                tuning.fail_abandoned(study, trial.number)
            raise
        sizing = unit.cell.sizing
        record.update(spec_key=unit.key, budget=self.budget.text, budget_params=sizing.target,
                      budget_reached=int(sizing.reached),
                      env={**record["env"], "worker": claims.owner})
        store.add(record, release=claims.owner)
        if trial is not None:  # after the record: the store, not the study, says what ran
            tuning.tell(study, trial.number, record)
        return record

    def study(self, cell: Cell, store: Store) -> optuna.Study:
        """Open (or continue) the cell's study; trials recorded but never told are told now."""
        if cell.study not in self._studies:
            study = tuning.open_study(store.url, cell.study, cell.task.higher_is_better)
            running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            for record in self.tune_records(store, cell):
                if record["details"]["trial"] in running:
                    tuning.tell(study, record["details"]["trial"], record)
            self._studies[cell.study] = study
        return self._studies[cell.study]

    @staticmethod
    def tune_records(store: Store, cell: Cell) -> list[dict]:
        keys = cell.tune_keys()
        return [r for r in store.records(phase="tune") if r["spec_key"] in keys]

    def tune(self, unit: Unit, trial: optuna.Trial) -> dict:
        cell, splits = unit.cell, self.splits[unit.cell.task.id]
        hparams = tuning.search_space(cell.method, trial, cell.has_head)
        train = nested_subset(splits.train, cell.fraction)
        record = self.train_run(cell, "tune", TUNE_SEED, hparams, train, val=splits.val, trial=trial)
        record["details"].update(study=cell.study, slot=unit.index, trial=trial.number)
        return record

    def final(self, unit: Unit, store: Store) -> dict:
        """The best configuration on val (the defaults without trials), on train+val, tested once."""
        cell, splits = unit.cell, self.splits[unit.cell.task.id]
        if cell.settings["trials"] == 0:
            hparams, selected = tuning.defaults(cell.method, cell.has_head), {"by": "defaults"}
        else:
            chosen = tuning.best(self.tune_records(store, cell), cell.task.higher_is_better)
            if chosen is None:
                record = self.new_record(cell, "final", unit.index, {})
                return {**record, "status": "failed",
                        "error": f"no tuning trial finished (all {cell.settings['trials']} failed or were pruned)"}
            hparams = chosen["hparams"]
            selected = {"by": "val", "study": cell.study, "slot": chosen["details"]["slot"],
                        "val_metric": chosen["val_metric"]}
        trainval = nested_subset(splits.trainval, cell.fraction)
        record = self.train_run(cell, "final", unit.index, hparams, trainval, test=splits.test)
        record["details"]["selected"] = selected
        return record

    def load_splits(self, task: Task, backbone: Backbone, settings: dict) -> Splits:
        """Load (lazily, where the task can) and cap the training data as the settings say."""
        splits = task.load(settings["image_size"], backbone.mean, backbone.std, self.options.data_root)
        train_cap, eval_cap = settings["max_train_examples"], settings["max_eval_examples"]
        if train_cap is not None:
            splits = replace(splits, train=first_n(splits.train, train_cap), trainval=first_n(splits.trainval, train_cap))
        if eval_cap is not None:
            splits = replace(splits, val=first_n(splits.val, eval_cap), test=first_n(splits.test, eval_cap))
        return splits

    def new_record(self, cell: Cell, phase: str, seed: int, hparams: dict) -> dict:
        task, backbone = cell.task, cell.backbone
        return {
            "run_id": uuid.uuid4().hex, "suite": task.suite, "task": task.name, "group": task.group,
            "method": cell.method.name, "backbone": backbone.name, "size": cell.sizing.size, "hparams": hparams,
            "settings": cell.settings, "seed": seed, "data_fraction": cell.fraction, "phase": phase,
            "metric": task.metric, "total_params": backbone.total_params, "env": self.env, "details": {},
        }

    def train_run(self, cell: Cell, phase: str, seed: int, hparams: dict, train_data, val=None, test=None,
                  trial: optuna.Trial | None = None) -> dict:
        """Train on ``train_data``; score ``val`` after every epoch (reporting to ``trial``, which
        may prune) and ``test`` once at the end. Failures are recorded, and the sweep goes on."""
        task, backbone, settings = cell.task, cell.backbone, cell.settings
        kind = KINDS[task.kind]
        record = self.new_record(cell, phase, seed, hparams)
        record["details"]["train_examples"] = len(train_data)
        curve = []

        def validate(epoch: int) -> None:
            curve.append(kind.score(model, backbone, val, settings))
            if trial is not None:
                trial.report(curve[-1].metric, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: val {curve[-1].metric:.4g} "
                                             f"below the median of earlier trials")

        try:
            if cell.error is not None:
                raise RuntimeError(cell.error)
            torch.manual_seed(seed)
            local = copy.deepcopy(backbone)
            probe = Probe(kind.probe(backbone, train_data, settings), local.module.to(device()))
            adapted = cell.method.apply(local, cell.sizing.size, hparams)
            check_count(cell.sizing.count, adapted)
            probe.check_connected(adapted)
            model = kind.build(task, backbone, adapted)
            # a method that trains nothing in the backbone (the linear probe) has no lr of its own
            config = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"],
                                 lr=hparams.get("lr", 0.0), head_lr=hparams.get("head_lr"),
                                 weight_decay=hparams["weight_decay"], seed=seed)
            stats = kind.train(model, backbone, train_data, config, settings,
                               desc=f"{task.id} {cell.method.name} {phase} s{seed}", progress=self.options.progress,
                               on_epoch=validate if val is not None else None)
            if cell.sizing.count:
                probe.check_changed(adapted)
            params, head = trainable(model), kind.head_params(model)
            record.update(status="ok", trainable_params=sum(p.numel() for p in params) - head, head_params=head,
                          train_seconds=stats.seconds, train_samples_per_s=stats.samples_per_s,
                          peak_memory_mb=stats.peak_memory_mb,
                          adapter_bytes=sum(p.numel() * p.element_size() for p in params))
            scored = kind.score(model, backbone, test, settings) if test is not None else (curve or [None])[-1]
            if scored is not None:
                record["eval_samples_per_s"] = scored.samples_per_s
                record["details"].update(scored.details)
            if test is not None:
                record["test_metric"] = scored.metric
            if phase == "final" and cell.method.mergeable:  # a throughput: a few batches tell it
                merged = merged_copy(model)
                record["merged_eval_samples_per_s"] = kind.score(
                    merged, backbone, first_n(test, MERGED_SPEED_EXAMPLES), settings).samples_per_s
            if phase == "final" and self.options.adapters_dir:
                record["details"]["trained_tensors"] = save_trained(
                    model, Path(self.options.adapters_dir) / f"{record['run_id']}.safetensors",
                    {"task": task.id, "method": cell.method.name, "backbone": backbone.name, "seed": seed,
                     "size": json.dumps(cell.sizing.size), "hparams": json.dumps(hparams)})
        except (UsageError, KeyboardInterrupt):
            raise
        except optuna.TrialPruned as exc:
            record.update(status="pruned", error=str(exc))
        except Exception as exc:  # recorded, and the sweep goes on
            if out_of_memory(exc):  # not the method's fault: stop, record nothing, say how to go on
                raise OutOfMemory(f"out of memory in {task.id} {cell.method.name} {phase} (batch size "
                                  f"{settings['batch_size']}); finished runs are stored: free memory and rerun "
                                  f"with --resume, or start a new sweep with a smaller --batch-size") from exc
            record.update(status="failed", error=one_line(exc),
                          env={**self.env, "traceback": traceback.format_exc(limit=8)})
        if curve:
            record.update(val_metric=curve[-1].metric)
            record["details"]["val_curve"] = [score.metric for score in curve]
        return record


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


def with_targets(backbone: Backbone, targets) -> Backbone:
    """The backbone with the recipe's target roles (None: its family's default), checked against its layout."""
    roles = tuple(targets or backbone.target_roles)
    unknown = [role for role in roles if role not in TARGET_ROLES]
    if unknown:
        raise UsageError(f"unknown target '{unknown[0]}' (targets are roles: {', '.join(TARGET_ROLES)})")
    missing = [role for role in roles if not any(backbone.layout.modules(role))]
    if missing:
        raise UsageError(f"{backbone.name} has no '{missing[0]}' projection to adapt")
    return replace(backbone, targets=roles)


def size_method(method: Method, backbone: Backbone, target: int) -> tuple[Sizing, str | None]:
    """The method's size at the budget; a plugin whose check(), sizes() or count() raises (anything
    but a UsageError, which is bad input) gets a placeholder and the reason, so its runs fail while
    the other methods run."""
    try:
        method.check(backbone)
        return solve(method, backbone, target), None
    except UsageError:
        raise
    except Exception as exc:
        return Sizing({}, 0, target), f"{method.name} could not size itself: {one_line(exc)}"


def out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return (isinstance(exc, (MemoryError, torch.OutOfMemoryError))
            or "out of memory" in text or "can't allocate memory" in text)


def first_n(data, n: int):
    """The first n examples: splits come shuffled with a fixed seed, so this is a fixed subset."""
    return data[:n] if isinstance(data, (list, tuple)) else Subset(data, range(min(n, len(data))))
