"""The CLI's error helpers in one place: a user mistake is one line on stderr and exit code 2."""
from __future__ import annotations

from pathlib import Path

import typer


def fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def check_out(path: Path, folder: bool = False, flag: str = "--out") -> None:
    """Before any work: an output that cannot be written is one line now, not a traceback at the end."""
    from ganforge.io_utils import check_output_dir, check_output_file

    (check_output_dir if folder else check_output_file)(path, flag)  # a UserError: one line, exit 2


def int_list(text: str, flag: str) -> list[int]:
    """Comma-separated integers, or one line naming the flag and exit 2."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values:
        fail(f"bad {flag} {text!r}: write comma-separated integers, e.g. {flag} 0,1,2")
    return values


def click_exception_types() -> tuple[type, ...]:
    """The usage-error base classes of whatever typer is installed.

    typer up to 0.2x re-raises click's ``ClickException``; later releases vendor click as ``typer._click`` and
    base its exceptions on ``typer.TyperException``, and no longer install click at all, so neither may be
    imported unconditionally.
    """
    types: list[type] = []
    if isinstance(getattr(typer, "TyperException", None), type):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


def is_usage_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "UsageError" for cls in type(exc).__mro__)


def one_line(exc: BaseException) -> str:
    """A usage error as one line, with where to look (click prints Usage / Try --help / Error on three)."""
    text = " ".join(exc.format_message().split()) if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", None) or "ganforge"
    return f"{text} (see '{where} --help')" if is_usage_error(exc) else text
