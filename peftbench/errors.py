"""Errors the command line turns into a one-line message and an exit code."""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, nothing recorded."""


class OutOfMemory(Exception):
    """A run ran out of memory: the sweep stops (exit code 1), the store stays consistent."""
