"""The ``xaudit`` Typer application and its error handling (user errors: one line, exit 2)."""

from __future__ import annotations

import sys

import typer

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


def main() -> None:
    """Console-script entry: run the app, turning user errors into one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except XAuditError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive as ClickException
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2 if isinstance(exc, click.UsageError) else 1)
        raise
