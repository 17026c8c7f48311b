"""Method and task plugins, found through entry points like any third-party package.

Built-in plugins are registered through the same entry points (see pyproject.toml), so a
package that declares ``[project.entry-points."peftbench.methods"]`` is listed and run alike.
A plugin that fails to load is reported by name and skipped; it never breaks the others.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points

from .budget import parse_budgets
from .errors import UsageError, did_you_mean
from .spec import parse_specs

METHOD_GROUP = "peftbench.methods"
TASK_GROUP = "peftbench.tasks"


@dataclass(frozen=True)
class Plugins:
    loaded: dict  # name -> loaded object
    origin: dict  # name -> distribution name ("peftbench" for built-ins)
    broken: dict  # name -> one-line reason


@functools.cache
def plugins(group: str) -> Plugins:
    loaded, origin, broken = {}, {}, {}
    for ep in sorted(entry_points(group=group), key=lambda ep: ep.name):
        try:
            loaded[ep.name] = ep.load()
        except Exception as exc:  # a third-party bug must not take the harness down
            broken[ep.name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        origin[ep.name] = ep.dist.name if ep.dist else "?"
    return Plugins(loaded, origin, broken)


def names(group: str) -> set[str]:
    """The plugins' names, without loading any: enough to refuse an unknown name at once."""
    return {ep.name for ep in entry_points(group=group)}


def methods() -> Plugins:
    return plugins(METHOD_GROUP)


def tasks() -> Plugins:
    return plugins(TASK_GROUP)


def check_names(methods: str, tasks: str, budget: str) -> None:
    """Unknown method or suite names, and a malformed budget, from the plugins' names alone."""
    known = names(METHOD_GROUP)
    for item in parse_specs(methods):
        if item.name not in known:
            raise UsageError(f"unknown method '{item.name}'{did_you_mean(item.name, known)} "
                             f"(available: {', '.join(sorted(known))})")
    parse_budgets(budget)
    suites_ = {name.lower() for name in names(TASK_GROUP)}
    for item in filter(None, (part.strip() for part in tasks.split(","))):
        suite = item.lower().partition("/")[0]
        if suite not in suites_ and suite.rpartition("-")[0] not in suites_:
            raise UsageError(f"unknown task suite '{item}'{did_you_mean(suite, suites_)} "
                             f"(available: {', '.join(sorted(suites_))})")
