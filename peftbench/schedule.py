"""Running a plan's units: claims share them between workers (none runs one twice), Optuna's
studies drive the tuning slots, and every finished unit becomes one record in the store."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from . import tuning
from .claims import Claims, Outcome
from .errors import UsageError
from .execute import Context, execute, failed
from .fractions import nested_subset
from .plan import Cell, Plan, Unit
from .records import Phase, RunRecord, Status
from .store import Store

#: how long a worker waits before looking again at units other workers hold
POLL_SECONDS = 2.0
#: every trial sees the same initialisations and data orders: only the configuration differs. A
#: recipe's ``tune_seeds`` of k trains each trial with seeds TUNE_SEED, ..., TUNE_SEED + k - 1.
TUNE_SEED = 0


class Scheduler:
    def __init__(self, plan: Plan, store: Store, env: dict, adapters_dir: str | None = None, progress: bool = True,
                 report: Callable[[RunRecord, Unit, int, int], None] | None = None):
        self.plan, self.store, self.env = plan, store, env
        self.adapters_dir, self.progress = adapters_dir, progress
        self.report = report or print_outcome
        self.claims = Claims(store)
        self._studies: dict[str, optuna.Study] = {}

    def check_resume(self, resume: bool) -> set[str]:
        """The keys of this sweep's finished units; without ``resume`` there must be none."""
        units = self.plan.units()
        done = self.store.finished() & {unit.key for unit in units}
        if done and not resume:
            raise UsageError(f"the store already holds {len(done)} of this sweep's {len(units)} runs: "
                             f"pass --resume to continue the sweep, or --store for a new one")
        return done

    def run(self, resume: bool) -> list[RunRecord]:
        """Run every unit not yet in the store; units other workers hold are waited for."""
        units = self.plan.units()
        keys = {unit.key for unit in units}
        done = self.check_resume(resume)
        records, pending = [], [unit for unit in units if unit.key not in done]
        try:
            self._run_pending(pending, records, keys, len(units))
        except BaseException:  # Ctrl-C may land between a claim and its unit's start: give back every claim
            self.claims.release_all()
            raise
        return records

    def _run_pending(self, pending: list[Unit], records: list[RunRecord], keys: set[str], total: int) -> None:
        while pending:
            waiting, done = [], self.store.finished()
            for unit in pending:
                if not ready(unit, done):
                    waiting.append(unit)  # what it depends on is not recorded yet (other workers' units)
                    continue
                outcome, abandoned = self.claims.claim(unit.key)
                if outcome is Outcome.BUSY:
                    waiting.append(unit)
                elif outcome is Outcome.CLAIMED:
                    records.append(self.run_unit(unit, abandoned))
                    done = self.store.finished()  # counted in the store: other workers' units too
                    self.report(records[-1], unit, len(done & keys), total)
            still = [unit for unit in waiting if unit.key not in done]
            if still and len(still) == len(pending):
                time.sleep(POLL_SECONDS)
            pending = still

    def run_unit(self, unit: Unit, abandoned: bool) -> RunRecord:
        """Run one claimed unit and store its record, which releases the claim."""
        study = trial = None
        context = Context(unit.key, {**self.env, "worker": self.claims.owner}, self.adapters_dir, self.progress)
        try:
            with self.claims.heartbeat(unit.key):
                if unit.phase is Phase.TUNE:
                    study = self.study(unit.cell)
                    if abandoned:  # its dead owner's trial, found by its slot in the study itself
                        tuning.fail_slot(study, unit.index)
                    trial = tuning.ask(study, unit.cell.study, unit.index, unit.cell.recipe.trials,
                                       tuning.first_trial(unit.cell.method, unit.cell.has_head))
                    record = self.tune(unit, trial, context)
                else:
                    record = self.final(unit, context)
        except BaseException:  # interrupted (Ctrl-C, bad input): the unit stays to be run again
            self.claims.release(unit.key)
            if trial is not None:
                tuning.fail_abandoned(study, trial.number)
            raise
        self.store.add(record, release=self.claims.owner)
        if trial is not None:  # after the record: the store, not the study, says what ran
            tuning.tell(study, trial.number, record.status, record.val_metric)
        return record

    def study(self, cell: Cell) -> optuna.Study:
        """Open (or continue) the cell's study, with every recorded trial told: a worker that died,
        or one that wrote its record a moment ago, may not have told it yet."""
        if cell.study not in self._studies:
            self._studies[cell.study] = tuning.open_study(self.store.url, cell.study, cell.task.higher_is_better,
                                                             cell.recipe.trials)
        study = self._studies[cell.study]
        running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        for record in self.tune_records(cell):
            if record["details"]["trial"] in running:
                tuning.tell(study, record["details"]["trial"], record["status"], record["val_metric"])
        return study

    def tune_records(self, cell: Cell) -> list[dict]:
        keys = cell.tune_keys()
        return [r for r in self.store.records(phase=Phase.TUNE.value) if r["spec_key"] in keys]

    def tune(self, unit: Unit, trial: optuna.Trial, context: Context) -> RunRecord:
        cell, splits = unit.cell, self.plan.splits[unit.cell.task.id]
        pinned = tuning.outside_space(cell.method, cell.has_head) if unit.index == 0 else {}
        hparams = tuning.search_space(cell.method, tuning.Pinned(trial, pinned), cell.has_head)
        train = nested_subset(splits.train, cell.fraction)
        details = {"study": cell.study, "slot": unit.index, "trial": trial.number}
        if pinned:  # the defaults trial ran them as they are, outside the space the others draw from
            details["defaults_outside_space"] = pinned
        return execute(unit, TUNE_SEED, hparams, train, context, val=splits.val, trial=trial, details=details,
                       seeds=cell.recipe.tune_seeds)

    def final(self, unit: Unit, context: Context) -> RunRecord:
        """The best configuration on val (the defaults without trials), on train+val, tested once."""
        cell, splits = unit.cell, self.plan.splits[unit.cell.task.id]
        if cell.recipe.trials == 0:
            hparams, selected = tuning.defaults(cell.method, cell.has_head), {"by": "defaults"}
        else:
            chosen = tuning.best(self.tune_records(cell), cell.task.higher_is_better)
            if chosen is None:
                return failed(unit, unit.index, context,
                              f"no tuning trial finished (all {cell.recipe.trials} failed or were pruned)")
            hparams = chosen["hparams"]
            selected = {"by": "val", "study": cell.study, "slot": chosen["details"]["slot"],
                        "val_metric": chosen["val_metric"]}
            if "val_per_seed" in chosen["details"]:
                selected["val_per_seed"] = chosen["details"]["val_per_seed"]
        trainval = nested_subset(splits.trainval, cell.fraction)
        return execute(unit, unit.index, hparams, trainval, context, test=splits.test,
                       details={"selected": selected})


def ready(unit: Unit, done: set[str]) -> bool:
    """A final run once its study's trials are recorded; a trial once the slots before it are,
    unless it is independent of them (``tuning.independent``)."""
    cell = unit.cell
    if unit.phase is Phase.FINAL:
        return cell.tune_keys() <= done
    return tuning.independent(unit.index, cell.recipe.trials) or all(
        Unit(cell, Phase.TUNE, slot).key in done for slot in range(unit.index))


def print_outcome(record: RunRecord, unit: Unit, number: int, total: int) -> None:
    if record.status is Status.OK:
        final = unit.phase is Phase.FINAL
        value = record.test_metric if final else record.val_metric
        outcome = f"{'test' if final else 'val'} {record.metric} {value:.4g}"
    else:
        outcome = f"{record.status.value}: {record.error}"
    print(f"[{number}/{total}] {unit}: {outcome}", file=sys.stderr, flush=True)
