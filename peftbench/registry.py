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
from .task import resolve_tasks

METHOD_GROUP = "peftbench.methods"
TASK_GROUP = "peftbench.tasks"


@dataclass(frozen=True)
class Plugins:
    loaded: dict  # name -> loaded object
    origin: dict  # name -> distribution name ("peftbench" for built-ins)
    broken: dict  # name -> one-line reason


@functools.cache
def plugins(group: str, only: frozenset[str] | None = None) -> Plugins:
    """Every plugin of the group, or ``only`` the named ones."""
    loaded, origin, broken = {}, {}, {}
    for ep in sorted(entry_points(group=group), key=lambda ep: ep.name):
        if only is not None and ep.name not in only:
            continue
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
    """Unknown method or suite names and a malformed budget from the plugins' names alone, then
    unknown tasks from the named suites' plugins alone (the built-in image suites load without
    torch): bad input is refused before torch and the method plugins load."""
    known = names(METHOD_GROUP)
    for item in parse_specs(methods):
        if item.name not in known:
            raise UsageError(f"unknown method '{item.name}'{did_you_mean(item.name, known)} "
                             f"(available: {', '.join(sorted(known))})")
    parse_budgets(budget)
    suites = {name.lower(): name for name in names(TASK_GROUP)}
    named = set()
    for item in filter(None, (part.strip() for part in tasks.split(","))):
        suite = item.lower().partition("/")[0]
        suite = suite if suite in suites else suite.rpartition("-")[0]  # a group: vtab-natural
        if suite not in suites:
            raise UsageError(f"unknown task suite '{item}'{did_you_mean(item.partition('/')[0], suites.values())} "
                             f"(available: {', '.join(sorted(suites.values()))})")
        named.add(suites[suite])
    found = plugins(TASK_GROUP, frozenset(named))
    resolve_tasks(tasks, found.loaded, found.broken)
