"""``xaudit demo`` (build the embedded workspace and serve the dashboard) and ``xaudit report``."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import typer

from xai_core.cli.base import app
from xai_core.config import home, workspace_dir
from xai_core.progress import TqdmProgress


def serve(port: int = 8501) -> subprocess.Popen:
    """Start the dashboard on ``port`` for the current workspace (in the background)."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from ui.server import start_dashboard

    typer.echo(f"dashboard: http://localhost:{port}  (workspace {home()})")
    return start_dashboard(home(), port)


def announce_accounts(created: list, *, image_build: bool = False) -> None:
    """Print the demo accounts made (or given new passwords) by this run with their passwords (the
    only time they are printed), or where an admin finds them when they already existed. An image
    build prints none: each container replaces them at its first start."""
    from xai_core.demo import ACCOUNTS
    from xai_core.review.demo_accounts import credentials_path

    if image_build:
        typer.echo("demo accounts made at image build; their passwords are not printed: each container "
                   "replaces them at its first start and prints its own")
        return
    if created:
        typer.echo("demo accounts (passwords printed this once; change them with "
                   "`xaudit users reset-password NAME`):")
        for account in created:
            typer.echo(f"  {account.name:<12} {account.role:<9} {account.password}")
        typer.echo("the dashboard asks for a sign-in; an admin sees these passwords on its Overview page "
                   "until they are changed")
        return
    names = ", ".join(f"{name} ({role})" for name, role in ACCOUNTS)
    typer.echo(f"demo accounts exist: {names}; an admin sees their passwords on the Overview page "
               f"(kept in {credentials_path()} until changed)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def demo(
    quick: bool = typer.Option(False, "--quick", help="Small complete workspace (≈2 min) instead of the full demo."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Build only; do not start the dashboard."),
    port: int = typer.Option(8501, "--port", envvar="XAUDIT_PORT", help="Dashboard port."),
    image_build: bool = typer.Option(
        False, "--image-build",
        help="Building a container image (implies --no-serve): mark the demo passwords, which every container "
             "of the image would share, to be replaced at each container's first start."),
) -> None:
    """Build the demo workspace stage by stage (resuming what exists) and serve the dashboard.

    The dashboard starts as soon as the benchmark data and the demo accounts (an admin and two
    reviewers; their passwords are printed once) exist, and fills in as stages complete. In a
    workspace built with ``--image-build`` (the Docker image's) the first run replaces the demo
    passwords made at image build first. SIGTERM (``docker stop``, a supervisor) stops it like
    Ctrl-C: the dashboard process goes too.
    """
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from db import get_engine
    from ui.server import ensure_port_free, stop
    from xai_core.demo import STAGES, build_demo, ensure_demo_accounts, replace_image_build_passwords, settings_for
    from xai_core.review.demo_accounts import mark_image_build

    no_serve = no_serve or image_build
    settings_for(quick)  # a broken studies/demo.yaml is one line, before any work
    if not no_serve:
        ensure_port_free(port)
    get_engine()  # a database that cannot be opened is one line, before any progress bar
    workspace_dir()  # an unwritable workspace (a read-only /data in Docker) stops here, in one line
    previous = signal.signal(signal.SIGTERM, _interrupt)
    bar = TqdmProgress("demo")
    server = None
    try:
        build_demo(quick=quick, only=("data",), progress=bar)
        # before the dashboard starts: it asks for a sign-in from its first page
        renewed = [] if image_build else replace_image_build_passwords()  # a container's first start
        created = ensure_demo_accounts()
        if image_build:
            mark_image_build()
        bar.close()
        if renewed:
            typer.echo("the demo passwords made at image build no longer work; this workspace has its own:")
        announce_accounts(renewed + created, image_build=image_build)
        bar = TqdmProgress("demo")  # a closed tqdm bar draws nothing more
        if not no_serve:
            server = serve(port)
        rest = tuple(name for name, _, _ in STAGES if name != "data")
        build_demo(quick=quick, only=rest, progress=bar)
        bar.close()
        typer.echo(f"demo workspace complete: {home()}")
        if server is not None:
            typer.echo(f"serving on http://localhost:{port} — Ctrl-C to stop")
            try:
                server.wait()
            except KeyboardInterrupt:
                typer.echo("stopping the dashboard")
    finally:
        bar.close()
        if server is not None:
            stop(server)
        signal.signal(signal.SIGTERM, previous)


@app.command()
def report(
    out: Path = typer.Option(None, "--out", help="Output folder (default: $XAUDIT_HOME/reports/<timestamp>)."),
) -> None:
    """Write the self-contained HTML report and its CSV tables."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.report import write_report

    path = write_report(out)
    typer.echo(str(path))
