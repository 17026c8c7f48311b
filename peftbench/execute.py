"""One run: build the adapted model, train it, score it, time its merged inference, save it, and
describe it as one RunRecord. A run that fails is recorded with the reason; the sweep goes on."""

from __future__ import annotations

import copy
import json
import statistics
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch

from . import tuning
from .artifacts import save_trained
from .budget import one_line
from .contracts import Probe, check_count, trainable
from .errors import OutOfMemory, UsageError
from .kinds import KINDS
from .merging import merged_copy
from .outcomes import encode
from .plan import Unit, first_n
from .records import RunRecord, Status
from .compute import device, precision
from .train import TrainConfig

MERGED_SPEED_EXAMPLES = 256


@dataclass
class Measured:
    """What a run found out, gathered as it goes; the record is built from it once, at the end."""

    status: Status = Status.OK
    error: str | None = None
    trainable_params: int | None = None
    head_params: int | None = None
    train_seconds: float | None = None
    train_samples_per_s: float | None = None
    peak_memory_mb: float | None = None
    adapter_bytes: int | None = None
    val_metric: float | None = None
    test_metric: float | None = None
    eval_samples_per_s: float | None = None
    merged_eval_samples_per_s: float | None = None
    outcomes: str | None = None
    details: dict = field(default_factory=dict)
    traceback: str | None = None

    @contextmanager
    def timed(self, part: str):
        """Adds the wall time of the block to ``details["seconds"][part]``: a run's fixed costs
        (setup, scoring, merged-speed timing, saving) beside its training loop."""
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = self.details.setdefault("seconds", {})
            seconds[part] = round(seconds.get(part, 0.0) + time.perf_counter() - start, 4)


@dataclass(frozen=True)
class Context:
    """Who runs the unit, and where its files go."""

    key: str  # the unit's spec key
    env: dict  # the environment, with the worker
    adapters_dir: str | None = None
    progress: bool = True


def execute(unit: Unit, seed: int, hparams: dict, train_data, context: Context, val=None, test=None,
            trial: optuna.Trial | None = None, details: dict | None = None, seeds: int = 1) -> RunRecord:
    """Train on ``train_data``; score ``val`` after every epoch (reporting to ``trial``, which may
    prune) and ``test`` once at the end.

    With ``seeds`` > 1 (a tuning trial under a recipe's ``tune_seeds``) the run trains seeds
    ``seed``, ..., ``seed + seeds - 1`` in turn: the first reports to ``trial`` (pruning acts on
    its curve, which ``details["val_curve"]`` keeps), the others only score val at their end;
    the val score is the mean of the seeds', which ``details["val_per_seed"]`` keeps."""
    run_id = uuid.uuid4().hex
    found = Measured(details={"train_examples": len(train_data), **(details or {})})
    _one_seed(unit, seed, hparams, train_data, val, test, trial, context, run_id, found)
    if seeds > 1 and found.status is Status.OK:
        per_seed = [found.val_metric]
        for extra in range(1, seeds):
            more = Measured()
            _one_seed(unit, seed + extra, hparams, train_data, val, test, None, context, run_id, more)
            spent = found.details.setdefault("seconds", {})
            for part, seconds in more.details.get("seconds", {}).items():
                spent[part] = round(spent.get(part, 0.0) + seconds, 4)
            if more.status is not Status.OK:  # the trial fails with the seed that failed
                found.status, found.traceback = more.status, more.traceback
                found.error = f"seed {seed + extra}: {more.error}"
                break
            per_seed.append(more.val_metric)
            found.train_seconds += more.train_seconds  # the trial's training: every seed's
            if more.peak_memory_mb is not None:
                found.peak_memory_mb = max(found.peak_memory_mb or 0.0, more.peak_memory_mb)
        else:
            found.val_metric = statistics.fmean(per_seed)
            found.details["val_seeds"] = list(range(seed, seed + seeds))
            found.details["val_per_seed"] = per_seed
    return _record(unit, seed, hparams, context, run_id, found)


def _one_seed(unit, seed, hparams, train_data, val, test, trial, context, run_id, found: Measured) -> None:
    """One training run with ``seed``, its outcome and measurements in ``found``."""
    cell = unit.cell
    curve = []
    try:
        with precision(cell.recipe.precision):
            _train_and_score(cell, unit.phase, seed, hparams, train_data, val, test, trial, context, run_id, found,
                             curve)
    except (UsageError, KeyboardInterrupt):
        raise
    except optuna.TrialPruned as exc:
        found.status, found.error = Status.PRUNED, str(exc)
    except Exception as exc:  # recorded, and the sweep goes on
        if out_of_memory(exc):  # not the method's fault: stop, record nothing, say how to go on
            raise OutOfMemory(f"out of memory in {cell.task.id} {cell.method.name} {unit.phase.value} (batch size "
                              f"{cell.recipe.batch_size}); finished runs are stored: free memory and rerun "
                              f"with --resume, or start a new sweep with a smaller --batch-size") from exc
        found.status, found.error, found.traceback = Status.FAILED, one_line(exc), traceback.format_exc(limit=8)
    if curve:
        found.val_metric = curve[-1].metric
        found.details["val_curve"] = [score.metric for score in curve]


def _train_and_score(cell, phase, seed, hparams, train_data, val, test, trial, context, run_id, found, curve):
    task, backbone, recipe = cell.task, cell.backbone, cell.recipe
    kind = KINDS[task.kind]
    if cell.error is not None:
        raise RuntimeError(cell.error)

    # the backbone as pretrained (the linear probe): its features are computed once, not every epoch
    frozen = not cell.method.trains_backbone and cell.sizing.count == 0

    def validate(epoch: int) -> None:
        if not scored_epoch(epoch):
            return
        with found.timed("validation"):
            curve.append(kind.score(model, backbone, val, recipe, frozen=frozen))
        found.details.setdefault("val_epochs", []).append(epoch + 1)
        if trial is not None:
            trial.report(curve[-1].metric, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: val {curve[-1].metric:.4g} "
                                         f"below the median of earlier trials")

    def scored_epoch(epoch: int) -> bool:
        """The last epoch gives the trial's value; an earlier one only matters where it may prune."""
        return epoch == recipe.epochs - 1 or (trial is not None and tuning.may_prune(recipe.trials, epoch))

    torch.manual_seed(seed)
    with found.timed("setup"):
        local = copy.deepcopy(backbone)
        probe = Probe(kind.probe(backbone, train_data, recipe), local.module.to(device()))
        adapted = cell.method.apply(local, cell.sizing.size, hparams)
        check_count(cell.sizing.count, adapted)
        probe.check_connected(adapted)
        model = kind.build(task, backbone, adapted)
    # a method that trains nothing in the backbone (the linear probe) has no lr of its own
    config = TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=hparams.get("lr", 0.0),
                         head_lr=hparams.get("head_lr"), weight_decay=hparams["weight_decay"], seed=seed,
                         epoch_samples=recipe.epoch_samples)
    stats = kind.train(model, backbone, train_data, config, recipe, frozen=frozen,
                       desc=f"{task.id} {cell.method.name} {phase.value} s{seed}", progress=context.progress,
                       on_epoch=validate if val is not None else None)
    if cell.sizing.count:
        with found.timed("setup"):
            probe.check_changed(adapted)
    params, head = trainable(model), kind.head_params(model)
    found.trainable_params, found.head_params = sum(p.numel() for p in params) - head, head
    found.adapter_bytes = sum(p.numel() * p.element_size() for p in params)
    found.train_seconds, found.train_samples_per_s = stats.seconds, stats.samples_per_s
    found.peak_memory_mb = stats.peak_memory_mb
    if test is not None:
        with found.timed("test"):
            scored = kind.score(model, backbone, test, recipe)
    else:
        scored = (curve or [None])[-1]
    if scored is not None:
        found.eval_samples_per_s = scored.samples_per_s
        found.details.update(scored.details)
    if test is None:
        return
    found.test_metric = scored.metric
    found.outcomes = encode(scored.outcomes) if scored.outcomes is not None else None
    if cell.method.mergeable:  # a throughput: a few batches tell it
        with found.timed("merged_speed"):
            merged = merged_copy(model)
            found.merged_eval_samples_per_s = kind.score(merged, backbone, first_n(test, MERGED_SPEED_EXAMPLES),
                                                         recipe).samples_per_s
    if context.adapters_dir:
        with found.timed("save"):
            found.details["trained_tensors"] = save_trained(
                model, Path(context.adapters_dir) / f"{run_id}.safetensors",
                {"task": task.id, "method": cell.method.name, "backbone": backbone.name, "seed": seed,
                 "size": json.dumps(cell.sizing.size), "hparams": json.dumps(hparams)})


def _record(unit: Unit, seed: int, hparams: dict, context: Context, run_id: str, found: Measured) -> RunRecord:
    cell = unit.cell
    task, backbone, sizing = cell.task, cell.backbone, cell.sizing
    env = {**context.env, "traceback": found.traceback} if found.traceback else context.env
    return RunRecord(
        run_id=run_id, spec_key=context.key, suite=task.suite, task=task.name, group=task.group,
        method=cell.method.name, backbone=backbone.name, budget=cell.budget, budget_params=sizing.target,
        budget_reached=int(sizing.reached), size=sizing.size, trainable_params=found.trainable_params,
        head_params=found.head_params, total_params=backbone.total_params, hparams=hparams, settings=cell.settings,
        seed=seed, data_fraction=cell.fraction, phase=unit.phase, metric=task.metric, val_metric=found.val_metric,
        test_metric=found.test_metric, train_seconds=found.train_seconds,
        train_samples_per_s=found.train_samples_per_s, eval_samples_per_s=found.eval_samples_per_s,
        merged_eval_samples_per_s=found.merged_eval_samples_per_s, peak_memory_mb=found.peak_memory_mb,
        adapter_bytes=found.adapter_bytes, status=found.status, error=found.error, details=found.details,
        outcomes=found.outcomes, env=env,
    )


def failed(unit: Unit, seed: int, context: Context, reason: str, details: dict | None = None) -> RunRecord:
    """A unit that could not run at all (a final run whose every trial failed)."""
    return _record(unit, seed, {}, context, uuid.uuid4().hex,
                   Measured(status=Status.FAILED, error=reason, details=details or {}))


def out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return (isinstance(exc, (MemoryError, torch.OutOfMemoryError))
            or "out of memory" in text or "can't allocate memory" in text)
