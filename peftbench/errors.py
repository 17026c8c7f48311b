"""Errors the command line turns into a one-line message and an exit code."""

import difflib


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, nothing recorded."""


class OutOfMemory(Exception):
    """A run ran out of memory: the sweep stops (exit code 1), the store stays consistent."""


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'quick'?)`` for the closest of ``known``, case aside; empty when none is close."""
    known = list(known)
    near = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1)
    return f" (did you mean '{next(k for k in known if k.lower() == near[0])}'?)" if near else ""
