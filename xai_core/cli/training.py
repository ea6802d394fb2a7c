"""Training and checkpoint commands: ``xaudit pretrain``, ``train``, ``train-grid``, ``models import|list``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xai_core.cli.base import app, echo_rows, models_app
from xai_core.progress import TqdmProgress


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@app.command("pretrain")
def pretrain_cmd(
    source: str = typer.Option(..., "--source", help="imagenet | natural | mri"),
    arch: str = typer.Option("vgg16", "--arch", help="architecture (see `xaudit models list --archs`)"),
    width: float = typer.Option(1.0, "--width", help="channel width multiplier (vgg16 only)"),
    size: int = typer.Option(64, "--size", help="pretext image size in pixels"),
    steps: int = typer.Option(250, "--steps", help="optimisation steps of the pretext task"),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    in_chans: Optional[int] = typer.Option(None, "--in-chans", help="1 (grey MRI) or 3; default: 3 for imagenet "
                                           "(grey images are replicated), else 1"),
    anatomy: Optional[Path] = typer.Option(None, "--anatomy", help="folder of T1 NIfTI volumes (mri; default MNI152)"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="CSV file,label for the mri task (e.g. sex)"),
    name: Optional[str] = typer.Option(None, "--name"),
) -> None:
    """Pre-train (or load ImageNet weights for) a network; saves a phase=pretrain checkpoint."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from models.architectures import get_architecture
    from models.pretraining import get_pretraining_source, pretrain

    get_pretraining_source(source).resolve_channels(in_chans)
    get_architecture(arch)
    bar = TqdmProgress(f"pretrain {source}")
    try:
        info = pretrain(source, arch=arch, width=width, size=size, steps=steps, batch_size=batch_size, lr=lr,
                        seed=seed, in_chans=in_chans, name=name, anatomy=anatomy, labels_csv=labels, progress=bar)
    finally:
        bar.close()
    acc = _metrics(info.id).get("pretext_accuracy")
    typer.echo(f"saved checkpoint {info.id} {info.name} ({info.path.name})"
               + (f", pretext accuracy {acc:.3f}" if isinstance(acc, float) else ""))


@app.command("train")
def train_cmd(
    dataset: str = typer.Option(..., "--dataset", help="dataset name (see `xaudit data list`)"),
    arch: str = typer.Option("vgg16", "--arch"),
    pretrain: str = typer.Option("natural", "--pretrain", help="imagenet | natural | procedural | mri | none"),
    degree: str = typer.Option("all", "--degree", help="tl | 1conv | 2conv | 3conv | 4conv | all"),
    protocol: str = typer.Option("single", "--protocol", help="single | tl-ft (TL then full fine-tuning)"),
    width: float = typer.Option(1.0, "--width"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    ft_epochs: Optional[int] = typer.Option(None, "--ft-epochs", help="tl-ft: the FT run's epochs (default --epochs)"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="also keep a checkpoint every E epochs"),
    name: Optional[str] = typer.Option(None, "--name"),
    augment: bool = typer.Option(False, "--augment", help="random flips/quarter turns of each image every epoch "
                                 "(for labels that do not depend on orientation, like lesion shape)"),
) -> None:
    """Fine-tune a network on a dataset at one degree (or TL then FT with --protocol tl-ft)."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from models.finetune import TrainConfig
    from models.grid import check_names, train

    check_names([arch], [pretrain], [degree], protocol)
    bar = TqdmProgress(f"train {arch} {pretrain} {degree}")
    try:
        infos = train(dataset, arch=arch, pretrain=pretrain, degree=degree, protocol=protocol, width=width,
                      epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, save_every=save_every, name=name,
                      config=TrainConfig(augment=augment), ft_epochs=ft_epochs, progress=bar)
    finally:
        bar.close()
    for info in infos:
        m = _metrics(info.id)
        typer.echo(f"saved checkpoint {info.id} {info.name}: test accuracy {m.get('accuracy', float('nan')):.3f}, "
                   f"balanced {m.get('balanced_accuracy', float('nan')):.3f}, ROC-AUC {m.get('roc_auc')}")


def _metrics(checkpoint_id: int | None) -> dict:
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from db import Checkpoint, session_scope

    if checkpoint_id is None:
        return {}
    with session_scope() as session:
        row = session.get(Checkpoint, checkpoint_id)
        return dict(row.metrics or {}) if row else {}


@app.command("train-grid")
def train_grid_cmd(
    dataset: str = typer.Option(..., "--dataset"),
    archs: str = typer.Option("vgg16", "--archs", help="comma-separated architectures"),
    pretrain: str = typer.Option("natural,mri", "--pretrain", help="comma-separated pre-training sources"),
    degrees: str = typer.Option("tl,1conv,2conv,3conv,4conv,all", "--degrees"),
    width: float = typer.Option(0.125, "--width"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    pretrain_steps: Optional[int] = typer.Option(None, "--pretrain-steps"),
    init: str = typer.Option("previous", "--init", help="where kconv/all cells start: previous (gradual "
                             "unfreezing) | tl | pretrained"),
    augment: bool = typer.Option(False, "--augment", help="random flips/quarter turns of each image every epoch "
                                 "(for labels that do not depend on orientation, like lesion shape)"),
) -> None:
    """Architectures x pre-training sources x degrees (the MRI study's design); resumable."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from models.finetune import TrainConfig
    from models.grid import check_names, train_grid

    check_names(_csv(archs), _csv(pretrain), _csv(degrees))
    bar = TqdmProgress("train-grid")
    kwargs = {"steps": pretrain_steps} if pretrain_steps else {}
    try:
        rows = train_grid(dataset, archs=_csv(archs), pretrains=_csv(pretrain), degrees=_csv(degrees), width=width,
                          seed=seed, epochs=epochs, lr=lr, batch_size=batch_size, init=init,
                          pretrain_kwargs=kwargs, config=TrainConfig(augment=augment) if augment else None,
                          progress=bar)
    finally:
        bar.close()
    typer.echo(f"{'arch':<14}{'pretrain':<10}{'degree':<8}{'accuracy':>9}{'seconds':>9}  checkpoint")
    for r in rows:
        acc = r.get("accuracy")
        typer.echo(f"{r['arch']:<14}{r['pretrain']:<10}{r['degree']:<8}{(acc if acc is not None else float('nan')):>9.3f}"
                   f"{(r.get('train_time_s') or 0):>9.1f}  {r['checkpoint_id']}{' (done before)' if r['skipped'] else ''}")


@models_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="safetensors or torch state-dict file"),
    arch: str = typer.Option(..., "--arch"),
    num_classes: int = typer.Option(..., "--num-classes"),
    name: Optional[str] = typer.Option(None, "--name"),
    width: float = typer.Option(1.0, "--width"),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="default: the dataset's image size, "
                                              "else the architecture's"),
    preprocess: str = typer.Option("none", "--preprocess", help="input normalisation the weights expect: none | "
                                   "imagenet (torchvision ImageNet mean/std) | inception ((x - 0.5) / 0.5)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset the checkpoint belongs to (explained "
                                          "on by default, listed on the Explain page)"),
) -> None:
    """Register an externally trained checkpoint after validating every tensor shape. Grey images are
    replicated to a 3-channel network's channels and normalised with --preprocess everywhere."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from models.checkpoints import import_checkpoint

    info = import_checkpoint(file, arch, num_classes, name=name, width=width, input_size=input_size,
                             preprocess=preprocess, dataset=dataset)
    meta = info.metadata
    typer.echo(f"imported checkpoint {info.id} {info.name} (sha256 {info.sha256[:12]}; {meta['in_chans']} input "
               f"channel(s), preprocessing {meta['preprocess']}, {meta['input_size']} px)")


@models_app.command("list")
def list_cmd(
    archs: bool = typer.Option(False, "--archs", help="list architectures and pre-training sources instead"),
) -> None:
    """List checkpoints (id, name, arch, pre-training, degree, phase, parent, accuracy)."""
    if archs:
        # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
        from models import get_architecture, list_architectures
        from models.pretraining import get_pretraining_source, list_pretraining_sources

        for a in list_architectures():
            spec = get_architecture(a)
            typer.echo(f"{a:<14}{spec.family:<11}min {spec.min_input_size:>3}px  CAM {spec.cam}")
        for s in list_pretraining_sources():
            typer.echo(f"source {s:<10}{get_pretraining_source(s).description}")
        return
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from models.checkpoints import list_checkpoints

    def line(r: dict) -> str:
        acc = r["accuracy"]
        return (f"{r['id']:>4}  {r['name'][:51]:<52}{r['arch']:<13}{r['pretrain']:<10}{(r['degree'] or '-'):<7}"
                f"{r['phase']:<9}{(r['parent_id'] or '-'):>6}{(f'{acc:.3f}' if acc is not None else '-'):>7}")

    echo_rows(list_checkpoints(), "no checkpoints yet; run `xaudit train --dataset NAME` or `xaudit models import FILE`",
              f"{'id':>4}  {'name':<52}{'arch':<13}{'pretrain':<10}{'degree':<7}{'phase':<9}{'parent':>6}{'acc':>7}", line)
