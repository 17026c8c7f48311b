"""Errors the command line turns into a one-line message and an exit code."""

import difflib


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, nothing recorded."""


class OutOfMemory(Exception):
    """A run ran out of memory: the sweep stops (exit code 1), the store stays consistent."""


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'quick'?)`` for the closest of ``known``, case aside; empty when none is close."""
    known = list(known)
    near = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=3)
    # among names equally similar to difflib ('lroa': 'road', 'lora'), the fewest typing slips wins
    near.sort(key=lambda k: edits(name.lower(), k))
    return f" (did you mean '{next(k for k in known if k.lower() == near[0])}'?)" if near else ""


def edits(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of two neighbours that turn ``a`` into ``b``."""
    rows = [list(range(len(b) + 1))] + [[i] + [0] * len(b) for i in range(1, len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[len(a)][len(b)]
