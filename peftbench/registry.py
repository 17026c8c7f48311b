"""Method and task plugins, found through entry points like any third-party package.

Built-in plugins are registered through the same entry points (see pyproject.toml), so a
package that declares ``[project.entry-points."peftbench.methods"]`` is listed and run alike.
A plugin that fails to load is reported by name and skipped; it never breaks the others.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points

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


def methods() -> Plugins:
    return plugins(METHOD_GROUP)


def tasks() -> Plugins:
    return plugins(TASK_GROUP)
