"""User-facing errors.

A ``UserError`` is a mistake the user can fix (bad path, unknown preset, bad ``--set``). The CLI prints its
message on one line and exits with code 2, without a traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message names the bad value and how to fix it."""

    exit_code = 2


class DataError(UserError):
    """A dataset is missing, empty, or unreadable."""
