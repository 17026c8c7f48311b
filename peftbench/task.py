"""The task plugin interface: a suite is a named list of tasks, each loading its own splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from .errors import UsageError, did_you_mean
from .records import Kind, Modality

if TYPE_CHECKING:  # task plugins load without torch, so a misspelt task name is refused at once
    from torch.utils.data import Dataset


@dataclass(frozen=True)
class Splits:
    """``train`` and ``val`` for tuning, ``trainval`` for the final run, ``test`` used once."""

    train: Dataset
    val: Dataset
    trainval: Dataset
    test: Dataset


@dataclass(frozen=True)
class Task:
    suite: str
    name: str
    group: str
    modality: Modality
    num_classes: int
    #: load(image_size, mean, std, data_root) -> Splits
    load: Callable[..., Splits]
    metric: str = "accuracy"
    higher_is_better: bool = True
    #: how it trains and scores (peftbench.records.Kind; plain strings are accepted)
    kind: Kind = Kind.CLASSIFY
    #: the data can only come from --data-root (no package or hub provides it)
    needs_data_root: bool = False

    def __post_init__(self):
        object.__setattr__(self, "modality", Modality(self.modality))
        object.__setattr__(self, "kind", Kind(self.kind))

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.name}"


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[Task, ...]
    description: str = ""
    #: the suite's recipe: default backbone, image size, epochs, batch size, ...
    recipe: dict = field(default_factory=dict)


def resolve_tasks(spec: str, suites: dict[str, Suite],
                  broken: dict[str, str] | None = None) -> list[tuple[Suite, Task]]:
    """Turn ``quick,vtab/dtd`` into (suite, task) pairs; unknown names, and suites whose plugin
    failed to load (``broken``: name -> reason), are a UsageError."""
    chosen: list[tuple[Suite, Task]] = []
    by_name = {name.lower(): suite for name, suite in suites.items()}  # names are case-insensitive
    for item in filter(None, (part.strip() for part in spec.split(","))):
        suite_name, _, task_name = item.lower().partition("/")
        group = None
        if suite_name not in by_name and "-" in suite_name and not task_name:  # a group: vtab-natural
            suite_name, _, group = suite_name.rpartition("-")
        suite = by_name.get(suite_name)
        if suite is None and suite_name in (broken or {}):
            raise UsageError(f"task plugin '{suite_name}' failed to load: {broken[suite_name]}")
        if suite is None:
            raise UsageError(f"unknown task suite '{item}'{did_you_mean(item, suites)} "
                             f"(available: {', '.join(sorted(suites)) or 'none'})")
        tasks = [t for t in suite.tasks if (not task_name or t.name.lower() == task_name)
                 and (group is None or t.group.lower() == group)]
        if not tasks:
            names = [f"{suite.name}/{t.name}" for t in suite.tasks]
            groups = sorted({f"{suite.name}-{t.group}" for t in suite.tasks})
            raise UsageError(f"unknown task '{item}'{did_you_mean(item, names + groups)} "
                             f"(available: {', '.join(names)})")
        chosen += [(suite, t) for t in tasks if (suite, t) not in chosen]
    if not chosen:
        raise UsageError("no tasks given (--tasks quick, or suite/task)")
    return chosen

