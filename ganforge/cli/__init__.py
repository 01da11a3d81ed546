"""The ``ganforge`` command line. User mistakes print one line and exit 2; nothing is half-written.

The commands live by job in this package (training, drawing, using, bench); importing them registers them on
``app`` in the order ``ganforge --help`` and docs/CLI.md list them.
"""
from __future__ import annotations

import os
import sys

import typer

from ganforge.cli import training, drawing, using, bench  # noqa: F401  (registers the commands, in this order)
from ganforge.cli.app import app, bench_app
from ganforge.cli.errors import click_exception_types, is_usage_error, one_line
from ganforge.errors import UserError

__all__ = ["app", "bench_app", "main"]


def _exit_now(code: int) -> None:
    """End a finished command without the interpreter's teardown: every file is closed and synced by then, and
    torch's static destructors would page in ~130 MB of its libraries, the largest memory peak of a CPU run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    """Entry point: turn user errors into one line and exit code 2; any other exception keeps its traceback."""
    try:
        rc = app(standalone_mode=False)  # returns (not raises) the code of a typer.Exit here
        _exit_now(rc if isinstance(rc, int) else 0)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt as exc:
        typer.echo(str(exc) or "interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors (bad option, missing argument) come through here
        if not isinstance(exc, click_exception_types()):
            raise
        typer.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(2 if is_usage_error(exc) else getattr(exc, "exit_code", 1))
