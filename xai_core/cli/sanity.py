"""``xaudit sanity``: the sanity checks of Adebayo et al. (2018) for a checkpoint's attribution methods."""

from __future__ import annotations

from typing import Optional

import typer

from xai_core.cli.base import app
from xai_core.progress import TqdmProgress


def _csv(value: Optional[str]) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@app.command("sanity")
def sanity_cmd(
    checkpoint: str = typer.Argument(..., help="checkpoint id, name or registered file"),
    methods: str = typer.Option("saliency", "--methods", "-m",
                                help="comma-separated attribution methods; baseline_sobel / baseline_random are the "
                                     "model-free controls (they must fail)"),
    mode: str = typer.Option("cascading", "--mode",
                             help="cascading (re-initialise from the head down, cumulative) | independent (one layer "
                                  "at a time) | data (a copy trained on shuffled labels)"),
    layers: Optional[str] = typer.Option(None, "--layers",
                                         help="comma-separated layers to randomise (default all): head, block5, ..., "
                                              "block1"),
    split: str = typer.Option("test", "--split", help="dataset split whose samples are explained"),
    limit: int = typer.Option(16, "--limit", min=1, help="explain the first N samples of the split"),
    seed: int = typer.Option(0, "--seed", help="seed of the re-initialisation (or of the label permutation)"),
    target: str = typer.Option("predicted", "--target", help="class to explain: predicted (by the trained model) | true"),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p",
                                              help="method parameter key=value (repeatable), e.g. n_steps=32"),
    shuffled: Optional[str] = typer.Option(None, "--shuffled",
                                           help="data mode: an existing shuffled-label checkpoint (default: train "
                                                "CHECKPOINT-shuffled<seed> with the same recipe on first use)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="images per pass (default by device)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | mps (default: auto)"),
) -> None:
    """Compare each method's maps with those of randomised models (Spearman of |map|, SSIM, HOG); resumable."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.attribution.registry import list_methods
    from xai_core.cli.attribution import parse_params
    from xai_core.metrics.sanity_job import check_request, sanity
    from xai_core.metrics.sanity_results import FAIL_SPEARMAN

    names = _csv(methods)
    check_request(checkpoint, mode, _csv(layers) or None, shuffled, names)  # bad names fail before the progress bar
    registered = [m for m in names if m in set(list_methods())]
    per_method = parse_params(param or [], registered) if param else {}
    bar = TqdmProgress(f"sanity {mode}")
    try:
        results = sanity(checkpoint, names, mode, _csv(layers) or None, split=split, limit=limit, seed=seed,
                         params=per_method, target=target, shuffled=shuffled, batch_size=batch_size, device=device,
                         progress=bar)
    finally:
        bar.close()
    for r in results:
        typer.echo(f"{r.checkpoint_id}->{r.reference_id}  {r.method:<22} {r.mode:<11} {r.step:<7} "
                   f"computed {r.computed:>4}  already stored {r.skipped:>4}")
    typer.echo(f"sanity {mode}: {sum(r.computed for r in results)} samples computed over {len(results)} steps; "
               f"a method fails when its median Spearman stays above {FAIL_SPEARMAN:g} (see the Benchmark page)")
