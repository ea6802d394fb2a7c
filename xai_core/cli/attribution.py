"""``xaudit explain`` (resumable attribution job) and ``xaudit methods`` (registry + capabilities)."""

from __future__ import annotations

from typing import Any, Optional

import typer

from xai_core.cli.base import app
from xai_core.errors import ConfigError, UnsupportedError
from xai_core.progress import TqdmProgress


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_params(pairs: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``["n_steps=32", ...]`` -> ``{method: {param: value}}`` for the methods that have each key.

    A key no selected method has raises :class:`ConfigError` (typo protection); values are
    coerced by each method's typed parameter.
    """
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.attribution import get_method

    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--param expects key=value (got {pair!r}), e.g. --param n_steps=32")
        key, value = (s.strip() for s in pair.split("=", 1))
        owners = [m for m in methods if key in get_method(m).param_names]
        if not owners:
            raise ConfigError(
                f"{key!r} is not a parameter of {', '.join(methods)}; see `xaudit methods --params`"
            )
        for m in owners:
            out[m][key] = get_method(m).param(key).coerce(m, value)
    return out


@app.command("explain")
def explain_cmd(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", help="checkpoint id, name or registered file"),
    methods: str = typer.Option("saliency", "--methods", "-m",
                                help="comma-separated attribution methods, or 'all' (every supported one)"),
    split: str = typer.Option("test", "--split", help="dataset split to explain: train | val | test | all"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset name (default: the checkpoint's)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="explain only the first N samples"),
    target: str = typer.Option("predicted", "--target", help="class to explain: predicted | true"),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p",
                                              help="method parameter key=value (repeatable), e.g. n_steps=32"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="images per pass (default by device)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | mps (default: auto)"),
) -> None:
    """Compute and store attribution maps of a checkpoint (resumable: stored maps are skipped)."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    import models
    from xai_core.attribution import capabilities, explain_checkpoint, get_method, list_methods

    row = models.resolve_checkpoint(checkpoint)
    caps = capabilities(row.arch)
    names = [m for m in list_methods() if caps[m] is True] if methods.strip() == "all" else _csv(methods)
    if not names:
        raise ConfigError("no methods given; e.g. --methods saliency,integrated_gradients")
    for name in names:
        get_method(name)
        if caps[name] is not True:
            raise UnsupportedError(f"{name} is not supported on {row.arch}: {caps[name]}")
    per_method = parse_params(param or [], names)
    split_arg = None if split == "all" else split
    for name in names:
        bar = TqdmProgress(name)
        try:
            result = explain_checkpoint(
                row.id, name, split=split_arg, params=per_method[name], progress=bar, dataset=dataset,
                limit=limit, target=target, batch_size=batch_size, device=device,
            )
        finally:
            bar.close()
        rate = f", {result.computed / result.seconds:.1f} images/s" if result.seconds > 0 else ""
        typer.echo(
            f"{name}: {result.computed} computed, {result.skipped} already stored"
            f" ({result.seconds:.1f} s on {result.device or 'no device'}{rate}; params {result.params_hash[:12]})"
        )


@app.command("methods")
def methods_cmd(
    arch: Optional[str] = typer.Option(None, "--arch", help="show support on this architecture only"),
    params: bool = typer.Option(False, "--params", help="list each method's parameters and defaults"),
) -> None:
    """List attribution methods, their parameters and the method x architecture capability matrix."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    import models
    from xai_core.attribution import capabilities, get_method, list_methods

    archs = [arch] if arch else models.list_architectures()
    matrix = {a: capabilities(a) for a in archs}
    width = max(len(m) for m in list_methods())
    typer.echo(" " * width + "  " + "  ".join(archs))
    for m in list_methods():
        cells = ["yes".center(len(a)) if matrix[a][m] is True else "no".center(len(a)) for a in archs]
        typer.echo(f"{m:<{width}}  " + "  ".join(cells))
    for a in archs:
        for m, verdict in matrix[a].items():
            if verdict is not True:
                typer.echo(f"  {m} on {a}: {verdict}")
    if params:
        for m in list_methods():
            spec = get_method(m)
            typer.echo(f"\n{m} ({spec.title}; {spec.library}; {spec.paper})")
            for p in spec.params:
                choices = f" [{'|'.join(map(str, p.choices))}]" if p.choices else ""
                typer.echo(f"  {p.name}={p.default!r}{choices}: {p.doc}")
