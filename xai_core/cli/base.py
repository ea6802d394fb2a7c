"""The ``xaudit`` Typer application and its error handling (user errors: one line, exit 2)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
import typer

from xai_core.config import configure_threads
from xai_core.errors import XAuditError

app = typer.Typer(
    name="xaudit",
    help="Audit the visual explanations of medical-image classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Build, import and list datasets.", no_args_is_help=True)
models_app = typer.Typer(help="Import and list checkpoints.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")


def echo_rows(rows: Sequence[dict[str, Any]], empty: str, header: str, line: Callable[[dict[str, Any]], str]) -> None:
    """A `list` command's output: ``empty`` when there are no rows, else ``header`` and one line per row."""
    if not rows:
        typer.echo(empty)
        return
    typer.echo(header)
    for row in rows:
        typer.echo(line(row))


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return its exit code; user errors
    print one line ``error: ...`` on stderr and give 2."""
    configure_threads()
    try:
        app(args=argv, standalone_mode=False)
    except XAuditError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except (click.ClickException, typer.TyperException) as exc:  # usage errors (typer ≥ 0.20 vendors click)
        exc.show()
        return int(getattr(exc, "exit_code", 1))  # 2 for usage errors
    return 0


def main() -> None:
    """Console-script entry point (exits with the code of :func:`run` when it is not 0)."""
    code = run()
    if code:
        sys.exit(code)
