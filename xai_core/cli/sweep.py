"""``xaudit sweep STUDY.yaml`` (run a study file: plan, then stages on an executor) and
``xaudit sweep status`` (a run's stages from the database)."""

from __future__ import annotations

from pathlib import Path

import typer

from xai_core.cli.base import app


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print_plan(study_file: str, plans: list) -> None:
    typer.echo(f"{'stage':<9} {'tasks':>6} {'stored':>7}  estimated cost (this machine's measured rates)")
    total, unmeasured = 0.0, 0
    for p in plans:
        if not p.tasks:
            cost = "-"
        elif p.unmeasured == len(p.tasks):
            cost = "no measured rate"
        else:
            cost = _duration(p.estimate_s) + (f" (+{p.unmeasured} tasks with no measured rate)" if p.unmeasured else "")
        total += p.estimate_s
        unmeasured += p.unmeasured
        typer.echo(f"{p.stage:<9} {len(p.tasks):>6} {p.skipped:>7}  {cost}")
    tail = f" + {unmeasured} tasks with no measured rate" if unmeasured else ""
    measured = _duration(total) + tail if total > 0 else "no measured rate"
    typer.echo(f"total    {sum(len(p.tasks) for p in plans):>6} {sum(p.skipped for p in plans):>7}  "
               f"{measured} (one worker; a cluster runs a stage's tasks in parallel)")


def _status(run: int | None) -> None:
    from xai_core.sweep import STAGES
    from xai_core.sweep.tracking import latest_run_id, run_info, stage_frame, task_frame

    run_id = run or latest_run_id()
    info = run_info(run_id) if run_id else None
    if info is None:
        typer.echo("no sweep has run in this workspace; start one with `xaudit sweep STUDY.yaml`")
        return
    where = f" at {info['address']}" if info["address"] else ""
    typer.echo(f"sweep run {info['id']}: study {info['study']}, executor {info['executor']}{where}, {info['state']}")
    typer.echo(stage_frame(run_id, STAGES).to_string(index=False))
    failed = task_frame(run_id, "failed")
    for row in failed.itertuples():
        typer.echo(f"failed: {row.key}: {row.error}")


@app.command("sweep")
def sweep(
    study: str = typer.Argument(..., help="a study file (YAML; presets in studies/), or `status`"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan (tasks per stage, cost) and stop"),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray"),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: start Ray here)"),
    run: int = typer.Option(None, "--run", help="with `status`: the run id (default the newest)"),
) -> None:
    """Run a study file stage by stage (data, pretrain, train, explain, evaluate, drift, beyond, report),
    skipping what is stored; `xaudit sweep status` shows a run's progress."""
    if study == "status" and not Path(study).exists():
        _status(run)
        return
    from xai_core.sweep import load_study, plan_study, run_sweep
    from xai_core.sweep.executors import check_executor

    spec = load_study(study)
    check_executor(executor)
    plans = plan_study(spec)
    typer.echo(f"study {spec.name}: {len(spec.parts)} part(s) ({', '.join(spec.parts)}), executor {executor}")
    _print_plan(study, plans)
    if dry_run:
        return
    result = run_sweep(spec, executor, address, progress=typer.echo)
    _status(result.run_id)
    if not result.ok:
        raise typer.Exit(1)
