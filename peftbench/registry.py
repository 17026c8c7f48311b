"""Method and task plugins, found through entry points like any third-party package.

Built-in plugins are registered through the same entry points (see pyproject.toml), so a
package that declares ``[project.entry-points."peftbench.methods"]`` is listed and run alike.
A plugin that fails to load is reported by name and skipped; it never breaks the others.
A method entry point may name a family instead of one method (every tuner of the installed peft):
its members are listed and run like any other method, and those it refuses are listed with why.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from .budget import parse_budgets
from .errors import UsageError, did_you_mean
from .family import MethodFamily
from .spec import parse_specs
from .task import resolve_tasks

METHOD_GROUP = "peftbench.methods"
TASK_GROUP = "peftbench.tasks"
#: plugins that offer many methods (every tuner of the installed peft): loading one is cheap, its
#: ``names()`` need no torch, and its members load with the other method plugins
FAMILY_GROUP = "peftbench.method_families"


@dataclass(frozen=True)
class Plugins:
    loaded: dict  # name -> loaded object
    origin: dict  # name -> distribution name ("peftbench" for built-ins)
    broken: dict  # name -> one-line reason
    refused: dict = field(default_factory=dict)  # a family's member that is not a method here -> why
    from_family: dict = field(default_factory=dict)  # a family's member -> the family's entry-point name


@functools.cache
def plugins(group: str, only: frozenset[str] | None = None) -> Plugins:
    """Every plugin of the group, or ``only`` the named ones; for methods, the families' members too."""
    loaded, origin, broken, refused, from_family = {}, {}, {}, {}, {}
    for ep in sorted(entry_points(group=group), key=lambda ep: ep.name):
        if only is not None and ep.name not in only:
            continue
        try:
            plugin = ep.load()
            mismatch = misnamed(group, ep.name, plugin)
        except Exception as exc:  # a third-party bug must not take the harness down
            broken[ep.name] = one_line(exc)
            continue
        if mismatch:
            broken[ep.name] = mismatch
            continue
        loaded[ep.name], origin[ep.name] = plugin, ep.dist.name if ep.dist else "?"
    if group == METHOD_GROUP and only is None:
        found, failed = families()
        broken.update(failed)
        for ep, family in found.items():  # a plain plugin of the same name wins over a member
            try:
                family.names()  # what names() fails on, check_names would report as unknown methods
                members, reasons = family.members(), family.refused()
            except Exception as exc:
                broken[ep.name] = one_line(exc)
                continue
            for name, method in members.items():
                if name in loaded:
                    continue
                why = misnamed(group, name, method)
                if why:
                    broken[name] = why
                else:
                    loaded[name], origin[name] = method, f"{ep.dist.name if ep.dist else '?'} ({family.origin})"
                    from_family[name] = ep.name
            refused.update({name: why for name, why in reasons.items() if name not in loaded})
    refused = {name: why for name, why in sorted(refused.items()) if name not in loaded}  # another family offers it
    return Plugins(dict(sorted(loaded.items())), origin, broken, refused, from_family)


def misnamed(group: str, name: str, plugin) -> str | None:
    """Why a plugin's own name disagrees with the name it is registered under (runs asked for by one
    would be recorded under the other), or None."""
    own = getattr(plugin, "name", None)
    kind = "method" if group == METHOD_GROUP else "suite"
    if own != name:
        return f"registered as '{name}', but its {kind} is named '{own}': the two must match"
    stray = [task for task in getattr(plugin, "tasks", ()) if group == TASK_GROUP and task.suite != name]
    if stray:
        return (f"task '{stray[0].name}' of suite '{name}' says its suite is '{stray[0].suite}': each Task's "
                f"suite must be its Suite's name")
    return None


@functools.cache
def families() -> tuple[dict, dict]:
    """The method families: (entry point -> family, entry-point name -> why it failed to load)."""
    found, failed = {}, {}
    for ep in sorted(entry_points(group=FAMILY_GROUP), key=lambda ep: ep.name):
        try:
            family = ep.load()
        except Exception as exc:
            failed[ep.name] = one_line(exc)
            continue
        if isinstance(family, MethodFamily):
            found[ep] = family
        else:
            failed[ep.name] = f"{ep.value} is a {type(family).__name__}, not a peftbench.family.MethodFamily"
    return found, failed


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def names(group: str) -> set[str]:
    """The plugins' names, without loading any (a family says its own without torch): enough to
    refuse an unknown name at once."""
    found = {ep.name for ep in entry_points(group=group)}
    if group == METHOD_GROUP:
        for family in families()[0].values():
            try:
                found |= set(family.names())
            except Exception:  # reported by methods() as broken
                continue
    return found


def methods() -> Plugins:
    return plugins(METHOD_GROUP)


def known_method(name: str) -> None:
    """Refuse a name no method plugin offers, or one a family refuses, with the reason."""
    found = methods()
    if name in found.refused:
        raise UsageError(f"{name} is not a method here: {found.refused[name]}")
    if name not in found.loaded and name not in found.broken:
        raise UsageError(f"unknown method '{name}'{did_you_mean(name, found.loaded)} "
                         f"(available: {', '.join(found.loaded)})")


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
