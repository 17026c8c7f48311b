"""The sweep API: one comparison, as the command line and the benchmark run it.

    from peftbench.runner import RunOptions, run_sweep
    records = run_sweep("hora,lora", "quick", RunOptions(trials=2), store="runs/results.db")

A sweep is planned (peftbench.plan: methods, tasks, budget, sizes; bad input fails there, before
the store is opened), then scheduled (peftbench.schedule: claims and Optuna studies) and each unit
executed (peftbench.execute: one run, one record).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from . import compute, defaults
from .envinfo import environment
from .plan import Plan, Planner
from .records import RunRecord
from .schedule import Scheduler
from .store import Store



@dataclass(frozen=True)
class RunOptions:
    """Choices on top of the suites' recipes; None means the recipe decides."""

    backbone: str | None = None
    budget: str = defaults.BUDGET
    seeds: int | None = None
    trials: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    image_size: int | None = None
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    epoch_samples: int | None = None  # every epoch draws at least this many examples (small fractions)
    eval_mode: str | None = None
    targets: tuple[str, ...] | None = None  # the modules every method adapts, by role (q, v, ...)
    precision: str | None = None  # fp32, bf16 or auto
    device: str | None = None  # this worker's device (cpu, cuda:N); None: LOCAL_RANK's GPU, the first, or the CPU
    data_root: str | None = None
    fractions: tuple[float, ...] = (1.0,)
    adapters_dir: str | None = None  # where final runs save their trained tensors
    resume: bool = False
    progress: bool = True


class Sweep:
    """A planned comparison: ``plan()`` validates and sizes, ``run(store)`` runs what is missing."""

    def __init__(self, methods: str, tasks: str, options: RunOptions):
        compute.set_device(options.device)  # before planning: auto precision depends on it
        self.planner = Planner(methods, tasks, options)
        self.options = options
        for method in self.planner.broken():
            print(f"peftbench: warning: method plugin '{method.name}' failed to load ({method.reason}); "
                  f"its runs are recorded as failed", file=sys.stderr)
        self._plan: Plan | None = None

    def plan(self, stand_ins: bool = False) -> Plan:
        """The sweep's plan; ``stand_ins``: before any download (see ``Planner.plan``)."""
        if self._plan is None:
            self._plan = self.planner.plan(stand_ins)
        return self._plan

    def fetch_data(self) -> None:
        """Download what the plan stood in for, then plan again on the real splits."""
        if self._plan is None or not self._plan.to_fetch:
            return
        from .hubdata import ensure

        for suite, task in self._plan.to_fetch:
            ensure(suite, task)
        self._plan = self.planner.plan()

    def check_resume(self, store: Store) -> None:
        """Without --resume, a store that already holds runs of this sweep is refused."""
        Scheduler(self.plan(), store, {}).check_resume(self.options.resume)

    def run(self, store: Store) -> list[RunRecord]:
        scheduler = Scheduler(self.plan(), store, environment(), self.options.adapters_dir, self.options.progress)
        return scheduler.run(self.options.resume)


def run_sweep(methods: str, tasks: str, options: RunOptions = RunOptions(), store: str | Store = "runs/results.db"
              ) -> list[RunRecord]:
    """Plan and run a comparison; returns the records this call added to the store."""
    sweep = Sweep(methods, tasks, options)
    sweep.plan()
    return sweep.run(store if isinstance(store, Store) else Store(store))
