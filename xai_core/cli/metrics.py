"""``xaudit evaluate``, ``xaudit faithfulness``, ``xaudit drift``, ``xaudit metrics`` and ``xaudit export``:
metric jobs, the metric registries and table export."""

from __future__ import annotations

from typing import Any, Optional

import typer

from xai_core.cli.base import app
from xai_core.errors import ConfigError
from xai_core.progress import TqdmProgress


def _split(values: Optional[list[str]]) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


@app.command()
def evaluate(
    checkpoint: Optional[list[str]] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint id or name (repeatable; default: all with stored maps)."),
    methods: Optional[list[str]] = typer.Option(None, "--methods", "-m", help="Attribution methods (comma-separated or repeated; default: all stored)."),
    selection: str = typer.Option("correct", help="Samples: correct | all | incorrect (stored with the results)."),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also score random and Sobel edge maps (chance-level maps)."),
    metrics: Optional[list[str]] = typer.Option(None, "--metrics", help="Ground-truth metrics (comma-separated or repeated; default: all registered, see `xaudit metrics`)."),
    chunk_size: int = typer.Option(256, min=1, help="Maps per chunk (one DB transaction each)."),
) -> None:
    """The registered ground-truth metrics (`xaudit metrics` lists them) of stored maps; values already stored are kept."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.metrics.evaluate_job import evaluate as run

    bar = TqdmProgress("evaluate")
    try:
        results = run(_split(checkpoint), _split(methods), selection, baselines, bar, metrics=_split(metrics),
                      chunk_size=chunk_size)
    finally:
        bar.close()
    computed = sum(r.computed for r in results)
    skipped = sum(r.skipped for r in results)
    for r in results:
        if r.note:
            typer.echo(f"checkpoint {r.checkpoint_id}  {r.note}")
            continue
        typer.echo(f"checkpoint {r.checkpoint_id}  {r.method:<18} computed {r.computed:>6}  already stored {r.skipped:>6}")
    typer.echo(f"evaluated {computed} maps ({skipped} already stored), selection={selection}")


def parse_metric_params(pairs: list[str], metrics: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["steps=32", "road_morf.percentiles=20,80"]`` -> ``{metric: {param: value}}``: ``key=value``
    goes to every selected faithfulness metric that has the parameter, ``metric.key=value`` to one."""
    from xai_core.metrics.registry import get_faithfulness_metric, list_faithfulness_metrics

    names = [get_faithfulness_metric(m).name for m in metrics] if metrics else list_faithfulness_metrics()
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects key=value or metric.key=value (got {pair!r}), e.g. --param steps=32")
        metric, dot, name = key.strip().rpartition(".")
        owners = [metric] if dot else [m for m in names if name in get_faithfulness_metric(m).param_names]
        if dot and metric not in names:
            raise ConfigError(f"--param {pair!r} names {metric!r}, which is not computed; choose one of {', '.join(names)}")
        if not owners:
            raise ConfigError(f"{name!r} is not a parameter of {', '.join(names)}; see `xaudit metrics --params`")
        for m in owners:
            out.setdefault(m, {})[name] = get_faithfulness_metric(m).resolve({name: value})[name]
    return out


@app.command(name="faithfulness")
def faithfulness_cmd(
    checkpoint: Optional[list[str]] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint id or name (repeatable; default: all with stored maps)."),
    methods: Optional[list[str]] = typer.Option(None, "--methods", "-m", help="Attribution methods (comma-separated or repeated; default: all stored)."),
    selection: str = typer.Option("correct", help="Samples: correct | all | incorrect (stored with the results)."),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also score random and Sobel edge maps (chance-level maps)."),
    metrics: Optional[list[str]] = typer.Option(None, "--metrics", help="Faithfulness metrics (default: all registered, see `xaudit metrics`)."),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Metric parameter key=value or metric.key=value (repeatable), e.g. steps=32, road_morf.percentiles=20,50,80."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N maps per checkpoint and method in this run."),
    chunk_size: int = typer.Option(64, min=1, help="Maps per chunk (one DB transaction each)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | mps (default: auto)."),
) -> None:
    """The registered faithfulness metrics (deletion/insertion AUC, ROAD, faithfulness correlation) of stored maps,
    running the checkpoint on the device; values already stored are kept."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.metrics.faithfulness_job import faithfulness as run

    names = _split(metrics)
    per_metric = parse_metric_params(param or [], names)
    bar = TqdmProgress("faithfulness")
    try:
        results = run(_split(checkpoint), _split(methods), selection, baselines, bar, metrics=names, params=per_metric,
                      chunk_size=chunk_size, limit=limit, device=device)
    finally:
        bar.close()
    for r in results:
        if r.note:
            typer.echo(f"checkpoint {r.checkpoint_id}  {r.note}")
            continue
        typer.echo(f"checkpoint {r.checkpoint_id}  {r.method:<18} computed {r.computed:>6}  already stored {r.skipped:>6}")
    typer.echo(f"faithfulness: {sum(r.computed for r in results)} maps computed "
               f"({sum(r.skipped for r in results)} already stored), selection={selection}")


@app.command()
def drift(
    pair: Optional[list[str]] = typer.Option(None, "--pair", "-p", help="A:B checkpoint ids or names (repeatable; default: every TL->FT pair)."),
    methods: Optional[list[str]] = typer.Option(
        None, "--methods", "-m",
        help="Attribution methods (default: all stored for both); M_A:M_B compares two methods (A may equal B).",
    ),
    selection: str = typer.Option("true_positive", help="Samples: true_positive (correct for both) | all."),
    metrics: Optional[list[str]] = typer.Option(None, "--metrics", help="Drift metrics (comma-separated or repeated; default: all registered, see `xaudit metrics`)."),
    chunk_size: int = typer.Option(256, min=1, help="Map pairs per chunk (one DB transaction each)."),
    cross_methods: Optional[str] = typer.Option(
        None, "--cross-methods",
        help="Methods compared with each other on the same TL and FT checkpoint (default layercam,gradcam_plus_plus; "
             "checkpoints without maps of both are skipped); 'none' for no cross-method comparisons.",
    ),
) -> None:
    """The registered drift metrics (`xaudit metrics` lists them) between the maps of two checkpoints.

    Default pairs: every TL->FT pair and every TL->epoch pair (FT epoch checkpoints of
    `xaudit train --protocol tl-ft --save-every 1`), plus the cross-method comparisons."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.metrics.drift_job import drift as run

    pairs = None
    if pair:
        pairs = []
        for item in _split(pair) or []:
            parts = item.split(":")
            if len(parts) != 2 or not all(parts):
                raise ConfigError(f"--pair {item!r} must look like A:B (two checkpoint ids or names)")
            pairs.append((parts[0], parts[1]))
    bar = TqdmProgress("drift")
    try:
        extra = {} if cross_methods is None else {
            "cross_methods": () if cross_methods.strip().lower() == "none" else _split([cross_methods]) or ()}
        results = run(pairs, _split(methods), selection, bar, metrics=_split(metrics), chunk_size=chunk_size, **extra)
    finally:
        bar.close()
    for r in results:
        typer.echo(f"{r.checkpoint_a_id}->{r.checkpoint_b_id}  {r.method:<18} computed {r.computed:>6}  already stored {r.skipped:>6}")
    typer.echo(f"drift: {sum(r.computed for r in results)} pairs computed ({sum(r.skipped for r in results)} already stored)")


@app.command(name="metrics")
def list_metrics(
    params: bool = typer.Option(False, "--params", help="Also list each faithfulness metric's parameters and defaults."),
) -> None:
    """The registered ground-truth, drift and faithfulness metrics: name, meaning, which direction is better, range."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    import xai_core.metrics.faithfulness  # noqa: F401  (registers the faithfulness metrics)
    from xai_core.metrics.registry import DRIFT_METRICS, FAITHFULNESS_METRICS, GROUND_TRUTH_METRICS

    for registry in (GROUND_TRUTH_METRICS, DRIFT_METRICS, FAITHFULNESS_METRICS):
        typer.echo(f"{registry.kind}s:")
        width = max(len(name) for name in registry.list())
        for spec in registry.entries():
            typer.echo(f"  {spec.name:<{width}}  {spec.describe()}")
            for p in getattr(spec, "params", ()) if params else ():
                typer.echo(f"      {p.name}={p.default}  {p.doc}")


@app.command()
def export(
    table: str = typer.Argument(..., help="gt-metrics | drift-metrics | benchmark | drift-summary | rankings | reversals | accuracy | drift-study | phase-accuracy | cross-method | drift-epochs"),
    output: str = typer.Argument(..., help="Output file ending in .csv or .parquet."),
    selection: str = typer.Option("correct", help="Sample selection for summary tables."),
    metric: Optional[str] = typer.Option(None, help="Drift metric for rankings/reversals/drift-epochs (default iou_top20) or ground-truth metric for accuracy (default precision); see `xaudit metrics`."),
    n_boot: int = typer.Option(1000, min=100, help="Bootstrap resamples for CIs."),
) -> None:
    """Export a metrics table as CSV or Parquet."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.metrics.queries import export_table

    options = {"selection": selection, "n_boot": n_boot}
    if metric:
        options["metric"] = metric
    path, n = export_table(table, output, **options)
    typer.echo(f"wrote {n} rows to {path}")
