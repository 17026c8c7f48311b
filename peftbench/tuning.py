"""Optuna studies: one per (task, method, budget, backbone, settings), kept in the results store.

Every method gets the same number of trials, each trained on train and scored on val after
every epoch (a median pruner stops the hopeless ones, once half of the study's trials have
completed), and, where the recipe's ``tune_seeds`` asks, with several seeds whose mean val score
is the trial's. A trial's configuration depends only on
the study's seed, its slot and the slots before it, which it waits for where it could see them
(``independent``), so a resumed sweep, or one shared by any number of workers, samples and
prunes what one uninterrupted worker would.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from .method import Method
from .store import retrying

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY_SEED = 0
#: One search space for every method, log-uniform. The learning-rate range holds every built-in
#: method's published default (full fine-tuning's 1e-4 to VeRA's 5e-3) with a decade
#: either side, so no method starts nearer its own optimum than another.
LEARNING_RATE = (1e-5, 1e-1)
WEIGHT_DECAY = (1e-6, 1e-1)
#: The classifier head's learning rate: its own, the same default for every method, tuned alike.
HEAD_LR = 1e-3
#: The median pruner compares a trial's val score after an epoch with the completed trials' there,
#: once at least this many trials have completed (and half the study's: ``prune_startup``), and
#: never after the first epoch.
PRUNE_STARTUP_TRIALS, PRUNE_WARMUP_EPOCHS = 2, 1
#: The tuning protocol every run records in ``settings["protocol"]`` (records without it: 1).
#: 2: the pruner waits for half the study's trials to complete; a trial may train several seeds
#: (the recipe's ``tune_seeds``) and its val score is their mean.
PROTOCOL = 2


def prune_startup(trials: int) -> int:
    """How many trials of a study of ``trials`` must have completed (not been pruned or failed)
    before the pruner may stop one: half of them, at least ``PRUNE_STARTUP_TRIALS``. With fewer,
    a method whose first trials are unlucky is left with too few finished ones to choose from."""
    return max(PRUNE_STARTUP_TRIALS, math.ceil(trials / 2))


def defaults(method: Method, head: bool) -> dict:
    """What ``--trials 0`` runs and every study's first trial tries: the method's published
    defaults, and the head's shared default where the task kind trains a head."""
    return {**method.defaults, **({"head_lr": HEAD_LR} if head else {})}


def search_space(method: Method, trial, head: bool) -> dict:
    """The method's defaults overridden by this trial's suggestions: the shared space (the
    learning rate of whatever the method trains in the backbone, weight decay, the head's
    learning rate), then the method's own knobs."""
    shared = {}
    if method.trains_backbone:
        shared["lr"] = trial.suggest_float("lr", *LEARNING_RATE, log=True)
    shared["weight_decay"] = trial.suggest_float("weight_decay", *WEIGHT_DECAY, log=True)
    if head:
        shared["head_lr"] = trial.suggest_float("head_lr", *LEARNING_RATE, log=True)
    return {**defaults(method, head), **shared, **method.search_space(trial)}


class _Recorder:
    """A stand-in Optuna trial that records what a search space asks for and answers the first
    choice, so a space can be described without a study."""

    number = 0  # as the first trial of a study

    def __init__(self):
        self.asked: dict[str, str] = {}
        self.holds: dict[str, Callable[[object], bool]] = {}  # whether a value lies in the space

    def suggest_float(self, name, low, high, *, step=None, log=False):
        self.asked[name] = f"{'log-uniform' if log else 'uniform'} [{low:g}, {high:g}]"
        self.holds[name] = lambda value: isinstance(value, (int, float)) and low <= value <= high
        return low

    def suggest_int(self, name, low, high, *, step=1, log=False):
        self.asked[name] = f"integer [{low}, {high}]" + (" (log)" if log else "")
        self.holds[name] = lambda value: isinstance(value, int) and low <= value <= high
        return low

    def suggest_categorical(self, name, choices):
        self.asked[name] = "one of " + ", ".join(str(c) for c in choices)
        self.holds[name] = lambda value: value in choices
        return choices[0]


def describe_space(method: Method, head: bool = True) -> dict[str, str]:
    """Each tuned hyper-parameter and its range, as ``peftbench list methods --search-space`` shows them."""
    recorder = _Recorder()
    search_space(method, recorder, head)
    return recorder.asked


def study_name(task: str, method: str, budget: str, backbone: str, fraction: float, settings: dict) -> str:
    """Names the comparison; the settings (epochs, image size, ...) enter as a short hash.

    Trials and seeds are left out, so a larger --trials continues the same study."""
    fixed = {k: v for k, v in settings.items() if k not in ("trials", "seeds", "overrides")}
    digest = hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:8]
    return f"{task}|{method}|{budget}|{backbone}|{fraction:g}|{digest}"


def may_prune(trials: int, epoch: int) -> bool:
    """Whether a val score after ``epoch`` (from 0) can prune any trial of a study of ``trials``:
    where none can, only the last epoch needs scoring."""
    return trials > prune_startup(trials) and epoch >= PRUNE_WARMUP_EPOCHS


@functools.cache
def storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's tables beside the results, on the store's own URL."""
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return retrying(lambda: optuna.storages.RDBStorage(url, engine_kwargs=kwargs))


def open_study(store_url: str, name: str, higher_is_better: bool, trials: int) -> optuna.Study:
    """The study of a sweep of ``trials`` trials; its pruner waits for ``prune_startup(trials)``
    completed trials (Optuna's ``n_startup_trials`` counts completed ones only)."""
    return optuna.create_study(
        storage=storage(store_url), study_name=name, load_if_exists=True,
        direction="maximize" if higher_is_better else "minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=prune_startup(trials),
                                           n_warmup_steps=PRUNE_WARMUP_EPOCHS),
    )


def sampler(name: str, slot: int, trials: int) -> optuna.samplers.BaseSampler:
    """A sampler seeded by the study and the slot, not by its history of asks: a slot redone
    after a crash draws what it drew the first time."""
    seed = int(hashlib.sha256(f"{STUDY_SEED}|{name}|{slot}".encode()).hexdigest()[:8], 16)
    # random search for the first half of a small budget, then TPE
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=random_slots(trials), constant_liar=False)


def random_slots(trials: int) -> int:
    """How many slots draw at random before TPE learns from the finished ones."""
    return min(10, max(1, trials // 2))


def independent(slot: int, trials: int) -> bool:
    """Whether a slot's trial is the same whatever other slots have finished: it samples at random
    (or takes the defaults) and no pruning can act yet (fewer slots come before it than the
    pruner waits for). Any other slot must wait for the slots before it, so that a sweep run by
    any number of workers samples and prunes as one would."""
    return slot < min(random_slots(trials), prune_startup(trials))


def first_trial(method: Method, head: bool) -> dict:
    """The defaults of every hyper-parameter the space tunes and holds: what the sampler fixes in
    the first slot. Those outside it are ``outside_space``."""
    chosen, recorder = defaults(method, head), _Recorder()
    search_space(method, recorder, head)
    return {k: chosen[k] for k, holds in recorder.holds.items() if k in chosen and holds(chosen[k])}


def outside_space(method: Method, head: bool) -> dict:
    """Defaults the space cannot draw (a weight decay of 0 on a log scale): the first trial still
    runs them as they are, unsampled, so that it is the defaults it promises."""
    chosen, recorder = defaults(method, head), _Recorder()
    search_space(method, recorder, head)
    return {k: chosen[k] for k, holds in recorder.holds.items() if k in chosen and not holds(chosen[k])}


class Pinned:
    """An Optuna trial whose parameters named in ``values`` take those values instead of being
    sampled: absent from the trial's params, so the sampler learns nothing false from them."""

    def __init__(self, trial, values: dict):
        self.trial, self.values = trial, values

    def suggest_float(self, name, *args, **kwargs):
        return self.values[name] if name in self.values else self.trial.suggest_float(name, *args, **kwargs)

    def suggest_int(self, name, *args, **kwargs):
        return self.values[name] if name in self.values else self.trial.suggest_int(name, *args, **kwargs)

    def suggest_categorical(self, name, *args, **kwargs):
        return self.values[name] if name in self.values else self.trial.suggest_categorical(name, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.trial, name)


def ask(study: optuna.Study, name: str, slot: int, trials: int, fixed: dict) -> optuna.Trial:
    """The slot's trial; the first slot's takes ``fixed`` (the defaults), so tuning never selects
    worse on val than not tuning.

    Not ``study.enqueue_trial``: its queue of waiting trials is shared by every worker, and on SQLite
    two workers asking at once both popped the same enqueued trial (a multi-worker test caught it).
    A sampler that fixes the values is local to the slot's worker."""
    study.sampler = sampler(name, slot, trials)
    if slot == 0:
        with warnings.catch_warnings():  # stable since optuna 2.4, still labelled experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.sampler = optuna.samplers.PartialFixedSampler(fixed, study.sampler)
    trial = study.ask()
    trial.set_user_attr("slot", slot)  # the study itself says which slot a trial belongs to
    return trial


def tell(study: optuna.Study, trial: int, status: str, val_metric: float | None) -> None:
    """Report a recorded trial's outcome to the study (skipped if it was already told)."""
    if status == "ok":
        study.tell(trial, val_metric, skip_if_finished=True)
    else:
        state = TrialState.PRUNED if status == "pruned" else TrialState.FAIL
        study.tell(trial, state=state, skip_if_finished=True)


def fail_slot(study: optuna.Study, slot: int) -> None:
    """The running trials of a slot whose worker died: failed, so that they count for nothing."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("slot") == slot:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def fail_abandoned(study: optuna.Study, trial: int | None) -> None:
    """A trial whose worker died: failed, so that it counts for nothing."""
    if trial is not None:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def best(tune_records: list[dict], higher_is_better: bool) -> dict | None:
    """The finished trial with the best validation score (the earliest slot on ties)."""
    done = [r for r in tune_records if r["status"] == "ok" and r["val_metric"] is not None]
    if not done:
        return None
    sign = 1 if higher_is_better else -1
    return min(done, key=lambda r: (-sign * r["val_metric"], r["details"]["slot"]))
