"""Errors the command line turns into a one-line message and an exit code."""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, nothing recorded."""
