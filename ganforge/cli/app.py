"""The typer apps the command modules register on (a module of its own, so that none imports the package)."""
from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="Train, sample and compare GANs. Start with: ganforge train")
bench_app = typer.Typer(help="Benchmarks (speed and quality targets live here, not in tests).")
app.add_typer(bench_app, name="bench")
