"""One comparison: every (task, method, seed) becomes one record in the results store."""

from __future__ import annotations

import copy
import hashlib
import json
import traceback
import uuid
from dataclasses import dataclass, replace

import torch
from torch.utils.data import Subset

from . import registry
from .backbones import Backbone, check_backbone_name, load_backbone
from .budget import Budget, Sizing, budget_params, parse_budget, solve
from .envinfo import environment
from .errors import UsageError
from .method import Method
from .store import Store
from .task import Splits, Suite, Task, resolve_tasks
from .train import Classifier, TrainConfig, evaluate, train

DEFAULT_BUDGET = "lora:r=8"
DEFAULT_RECIPE = {"backbone": "dinov2-s", "image_size": 56, "epochs": 5, "batch_size": 32,
                  "max_train_examples": None, "max_eval_examples": None, "max_length": 256,
                  "eval_mode": "loglik"}
OVERRIDABLE = ("backbone", "epochs", "batch_size", "image_size", "max_train_examples", "max_eval_examples",
               "eval_mode")


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices; None means the suite's recipe decides."""

    backbone: str | None = None
    budget: str = DEFAULT_BUDGET
    seeds: int = 1
    epochs: int | None = None
    batch_size: int | None = None
    image_size: int | None = None
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    eval_mode: str | None = None
    data_root: str | None = None
    resume: bool = False
    progress: bool = True


def resolve_methods(spec: str) -> dict[str, Method]:
    found = registry.methods()
    chosen = {}
    for name in filter(None, (part.strip() for part in spec.split(","))):
        if name in found.broken:
            raise UsageError(f"method plugin '{name}' failed to load: {found.broken[name]}")
        if name not in found.loaded:
            raise UsageError(f"unknown method '{name}' (available: {', '.join(sorted(found.loaded))})")
        chosen[name] = found.loaded[name]()
    if not chosen:
        raise UsageError("no methods given (--methods lora,hora)")
    return chosen


def suites() -> dict[str, Suite]:
    return dict(registry.tasks().loaded)


@dataclass(frozen=True)
class PlannedRun:
    task: Task
    method: Method
    backbone: Backbone
    sizing: Sizing
    hparams: dict
    seed: int
    settings: dict

    def key(self, budget: str) -> str:
        """The same run asked for again gets the same key, whatever its outcome."""
        spec = {"task": self.task.id, "method": self.method.name, "backbone": self.backbone.name,
                "budget": budget, "size": self.sizing.size, "hparams": self.hparams, "seed": self.seed,
                "data_fraction": 1.0, "phase": "final", "settings": self.settings}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


class Sweep:
    """Runs the (task, method, seed) grid, writing each finished run to the store."""

    def __init__(self, methods: str, tasks: str, options: RunOptions):
        """Validate every choice up front, so bad input fails before any work or write."""
        self.methods = resolve_methods(methods)
        self.tasks = resolve_tasks(tasks, suites())
        self.budget: Budget = parse_budget(options.budget)
        self.reference = resolve_methods(self.budget.method) if self.budget.method else {}
        self.options = options
        for suite, task in self.tasks:
            check_backbone_name(self.settings(suite)["backbone"])
            if task.needs_data_root and options.data_root is None:  # say so before loading any model
                raise UsageError(f"{task.id} needs --data-root DIR holding the {suite.name} data "
                                 f"(the layouts are in README.md, 'Task suites')")
        self.env = environment()
        self._backbones: dict[tuple, Backbone] = {}
        self.splits: dict[str, Splits] = {}

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

    def plan(self) -> list[PlannedRun]:
        """Size every method for every task first: a budget or backbone a method cannot
        handle is bad input, reported before the first run starts."""
        planned = []
        for suite, task in self.tasks:
            settings = self.settings(suite)
            backbone = self.backbone(settings["backbone"], settings["image_size"])
            if task.modality != backbone.modality:
                raise UsageError(f"task {task.id} takes {task.modality} input, but {backbone.name} is a "
                                 f"{backbone.modality} model")
            self.splits[task.id] = self.load_splits(task, backbone, settings)
            target = budget_params(self.budget, backbone, self.reference)
            for method in self.methods.values():
                method.check(backbone)
                sizing = solve(method, backbone, target)
                hparams = dict(method.defaults)
                for seed in range(self.options.seeds):
                    planned.append(PlannedRun(task, method, backbone, sizing, hparams, seed, settings))
        return planned

    def run(self, store: Store, planned: list[PlannedRun] | None = None) -> list[dict]:
        planned = self.plan() if planned is None else planned
        done = store.finished() if self.options.resume else set()
        records = []
        for item in planned:
            key = item.key(self.budget.text)
            if key in done:
                continue
            record = self.one_run(item.task, item.method, item.backbone, self.splits[item.task.id],
                                  item.sizing, item.hparams, item.seed, item.settings)
            record.update(spec_key=key, budget=self.budget.text, budget_reached=int(item.sizing.reached))
            store.add(record)
            records.append(record)
        return records

    def load_splits(self, task: Task, backbone: Backbone, settings: dict) -> Splits:
        """Load (lazily, where the task can) and cap the training data as the settings say."""
        splits = task.load(settings["image_size"], backbone.mean, backbone.std, self.options.data_root)
        train_cap, eval_cap = settings["max_train_examples"], settings["max_eval_examples"]
        if train_cap is not None:
            splits = replace(splits, train=first_n(splits.train, train_cap), trainval=first_n(splits.trainval, train_cap))
        if eval_cap is not None:
            splits = replace(splits, val=first_n(splits.val, eval_cap), test=first_n(splits.test, eval_cap))
        return splits

    def one_run(self, task: Task, method: Method, backbone: Backbone, splits: Splits, sizing,
                hparams: dict, seed: int, settings: dict) -> dict:
        record = {
            "run_id": uuid.uuid4().hex, "suite": task.suite, "task": task.name, "group": task.group,
            "method": method.name, "backbone": backbone.name, "size": sizing.size, "hparams": hparams,
            "settings": settings, "seed": seed, "data_fraction": 1.0, "phase": "final",
            "metric": task.metric, "total_params": backbone.total_params, "env": self.env,
        }
        try:
            torch.manual_seed(seed)
            adapted = method.apply(copy.deepcopy(backbone), sizing.size, hparams)
            config = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"],
                                 lr=hparams["lr"], weight_decay=hparams["weight_decay"], seed=seed)
            fit = fit_choice if task.kind == "choice" else fit_classifier
            record.update(status="ok", **fit(task, backbone, adapted, splits, config, settings,
                                            desc=f"{task.id} {method.name} s{seed}",
                                            progress=self.options.progress))
        except (UsageError, KeyboardInterrupt):
            raise
        except Exception as exc:  # recorded, and the sweep goes on
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                          env={**self.env, "traceback": traceback.format_exc(limit=8)})
        return record


def first_n(data, n: int):
    """The first n examples: splits come shuffled with a fixed seed, so this is a fixed subset."""
    return data[:n] if isinstance(data, (list, tuple)) else Subset(data, range(min(n, len(data))))


def _trainable(module) -> list:
    return [p for p in module.parameters() if p.requires_grad]


def fit_classifier(task, backbone, adapted, splits, config, settings, desc, progress) -> dict:
    """Adapted encoder plus a linear head, trained on train, scored on val and test."""
    model = Classifier(adapted, backbone.feature_dim, task.num_classes)
    stats = train(model, splits.train, config, desc=desc, progress=progress)
    val, _ = evaluate(model, splits.val)
    test, eval_speed = evaluate(model, splits.test)
    head = sum(p.numel() for p in model.head.parameters())
    trainable = _trainable(model)
    return dict(
        trainable_params=sum(p.numel() for p in trainable) - head, head_params=head,
        val_metric=val, test_metric=test, train_seconds=stats.seconds,
        train_samples_per_s=stats.samples_per_s, eval_samples_per_s=eval_speed,
        peak_memory_mb=stats.peak_memory_mb, adapter_bytes=sum(p.numel() * p.element_size() for p in trainable),
    )


def fit_choice(task, backbone, adapted, splits, config, settings, desc, progress) -> dict:
    """A causal LM trained on answer tokens, scored by option log-likelihood or by generation."""
    from .lm import evaluate_choices, train_lm

    tokenizer, max_length, mode = backbone.tokenizer, settings["max_length"], settings["eval_mode"]
    stats = train_lm(adapted, tokenizer, splits.train, config, max_length=max_length, desc=desc, progress=progress)
    val = evaluate_choices(adapted, tokenizer, splits.val, mode=mode, max_length=max_length) if splits.val else None
    test = evaluate_choices(adapted, tokenizer, splits.test, mode=mode, max_length=max_length)
    trainable = _trainable(adapted)
    return dict(
        trainable_params=sum(p.numel() for p in trainable), head_params=0,
        val_metric=val["accuracy"] if val else None, test_metric=test["accuracy"],
        train_seconds=stats.seconds, train_samples_per_s=stats.samples_per_s,
        eval_samples_per_s=test["samples_per_s"], peak_memory_mb=stats.peak_memory_mb,
        adapter_bytes=sum(p.numel() * p.element_size() for p in trainable),
        details={"eval_mode": mode, "test_parse_failures": test["parse_failures"],
                 "val_parse_failures": val["parse_failures"] if val else None},
    )
