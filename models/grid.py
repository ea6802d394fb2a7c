"""Training jobs: one fine-tuning run (:func:`train`: degrees ``tl .. all``, the two-phase TL→FT
protocol) and the MRI study's grid (:func:`train_grid`), each saving checkpoints with their test
metrics and per-sample predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from torch import nn

from db import Checkpoint, session_scope
from models.architectures import DEGREES, build, get_architecture
from models.checkpoints import load, load_state_checked, save_checkpoint
from models.finetune import FitResult, TrainConfig, fit
from models.inputs import first_conv_channels, preprocess_name, set_preprocess
from models.prediction import classification_metrics, predict
from models.pretraining import ensure_pretrained, list_pretraining_sources
from models.splits import DataSplits, load_splits
from xai_core.errors import ConfigError, UnknownNameError
from xai_core.progress import Progress, silent

PROTOCOLS = ("single", "tl-ft")


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise UnknownNameError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def check_names(archs: Sequence[str] = (), pretrains: Sequence[str] = (), degrees: Sequence[str] = (),
                protocol: str = "single") -> None:
    """Raise UnknownNameError for an unknown architecture, pre-training source, degree or protocol."""
    for a in archs:
        get_architecture(a)
    for p in pretrains:
        _check_choice(p, list_pretraining_sources(), "pre-training source")
    for d in degrees:
        _check_choice(d, DEGREES, "fine-tuning degree")
    _check_choice(protocol, PROTOCOLS, "protocol")


def cell_name(dataset: str, arch: str, width: float, pretrain: str, degree: str, seed: int, suffix: str = "") -> str:
    """Checkpoint name of one grid cell, e.g. ``mri-lesions-vgg16-w0.125-natural-2conv-s0``."""
    return f"{dataset}-{arch}-w{width:g}-{pretrain}-{degree}-s{seed}{suffix}"


def init_from(model: nn.Module, arch: str, source: nn.Module) -> nn.Module:
    """Copy every non-head tensor of ``source`` into ``model`` (head keeps its fresh init), and
    ``source``'s input normalisation with them (the weights expect it)."""
    head = tuple(f"{h}." for h in get_architecture(arch).head)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(head)}
    load_state_checked(model, state, "pre-trained backbone", ignore=head)
    return set_preprocess(model, preprocess_name(source))


def shuffled_labels(splits: DataSplits, seed: int) -> DataSplits:
    """A copy of ``splits`` whose train and validation labels are permuted (seeded; class counts
    kept), the test split untouched: the data-randomisation test of Adebayo et al. (2018) trains on
    it, and its test metrics then show the model learnt nothing that transfers (chance level)."""
    rng = np.random.default_rng(int(seed))
    train_x, train_y = splits.train
    val_x, val_y = splits.val
    return replace(splits, train=(train_x, rng.permutation(np.asarray(train_y))),
                   val=(val_x, rng.permutation(np.asarray(val_y))))


def _start_model(arch: str, splits: DataSplits, width: float, pretrain: str, in_chans: int | None,
                 pretrain_kwargs: dict[str, Any], progress: Progress) -> tuple[nn.Module, int | None]:
    """Fresh model initialised from the ``pretrain`` source; returns (model, pretrain checkpoint id).

    ``in_chans`` None: the source's channels (3 for ImageNet weights, grey images replicated; else 1)."""
    if pretrain == "none":
        return build(arch, splits.num_classes, in_chans or 1, width), None
    source_model, source_meta = ensure_pretrained(pretrain, arch, width, in_chans, progress=progress, **pretrain_kwargs)
    model = build(arch, splits.num_classes, int(source_meta["in_chans"]), width)
    init_from(model, arch, source_model)
    return model, source_meta.get("checkpoint_id")


def _save(model: nn.Module, splits: DataSplits, *, name: str, arch: str, width: float, pretrain: str,
          degree: str, phase: str, parent_id: int | None, result: FitResult | None, epoch: int | None,
          config: TrainConfig, extra_metrics: dict[str, Any] | None = None) -> Any:
    pred, probs = predict(model, splits.test[0], batch_size=128, device=config.device)
    metrics = classification_metrics(splits.test[1], probs)
    metrics.update(extra_metrics or {})
    metrics["config"] = {k: v for k, v in config.__dict__.items()}
    if result is not None:
        metrics["best_epoch"] = result.best_epoch
    predictions = None
    if splits.test_pks is not None:
        labels = np.asarray(splits.test[1])
        predictions = (splits.test_pks, pred, probs[np.arange(len(pred)), pred], pred == labels)
    return save_checkpoint(
        model, name=name, arch=arch, width=width, num_classes=splits.num_classes,
        in_chans=first_conv_channels(model) or 1,
        input_size=splits.input_size, pretrain=pretrain, degree=degree, phase=phase, class_names=splits.class_names,
        epoch=epoch, parent_id=parent_id, dataset_id=splits.dataset_id, metrics=metrics,
        history=result.history if result else [], train_time_s=result.seconds if result else 0.0,
        device=result.device if result else "cpu", predictions=predictions,
    )


def _fit_and_save(model: nn.Module, splits: DataSplits, *, name: str, arch: str, width: float,
                  pretrain: str, degree: str, phase: str, parent_id: int | None, config: TrainConfig,
                  progress: Progress, feature_cache: dict | None = None,
                  extra_metrics: dict[str, Any] | None = None) -> Any:
    def on_epoch(epoch: int, m: nn.Module) -> None:
        _save(m, splits, name=f"{name}-e{epoch}", arch=arch, width=width, pretrain=pretrain,
              degree=degree, phase="epoch", parent_id=parent_id, result=None, epoch=epoch, config=config)

    result = fit(model, arch, degree, splits.train, splits.val, config, progress, on_epoch, label=name,
                 feature_cache=feature_cache)
    return _save(model, splits, name=name, arch=arch, width=width, pretrain=pretrain,
                 degree=degree, phase=phase, parent_id=parent_id, result=result, epoch=None, config=config,
                 extra_metrics=extra_metrics)


def train(
    dataset: str | DataSplits,
    arch: str = "vgg16",
    pretrain: str = "natural",
    degree: str = "all",
    protocol: str = "single",
    width: float = 1.0,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    save_every: int | None = None,
    name: str | None = None,
    in_chans: int | None = None,
    config: TrainConfig | None = None,
    pretrain_kwargs: dict[str, Any] | None = None,
    ft_epochs: int | None = None,
    shuffle_labels: int | None = None,
    progress: Progress = silent,
) -> list[Any]:
    """Fine-tune ``arch`` on ``dataset`` from the ``pretrain`` source at ``degree``.

    ``protocol="single"``: one run, checkpoint phase ``tl`` (degree tl) or ``ft``, parent = the
    pre-training checkpoint. ``protocol="tl-ft"`` (Elangovan & Ting): a TL run (head only), then
    full fine-tuning (``all``) continued from it; parent(FT) = TL, parent(TL) = pre-training;
    ``ft_epochs`` (default: the same as TL) sets the FT run's epochs apart (a head-only TL epoch on
    cached frozen features costs a fraction of a full FT epoch).
    Missing ``natural``/``mri`` pre-training checkpoints are created first. ``in_chans``: the
    network's input channels, default the source's (ImageNet weights take 3: grey images are
    replicated and normalised as the weights expect; otherwise 1). Returns the saved
    :class:`models.checkpoints.CheckpointInfo` (TL then FT for ``tl-ft``).
    ``shuffle_labels`` (a seed): train on the dataset's train/val splits with their labels permuted
    (:func:`shuffled_labels`; no new dataset files), recorded as ``metrics["shuffle_labels"]`` and
    in the default name (``...-shuffled{seed}``).
    """
    get_architecture(arch)
    _check_choice(degree, DEGREES, "fine-tuning degree")
    _check_choice(protocol, PROTOCOLS, "protocol")
    _check_choice(pretrain, list_pretraining_sources(), "pre-training source")
    for flag, value in (("--epochs", epochs), ("--ft-epochs", ft_epochs)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1 (got {value})")
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr must be positive (got {lr})")
    cfg = config or TrainConfig()
    overrides = {k: v for k, v in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size),
                                    ("save_every", save_every)) if v is not None}
    cfg = replace(cfg, seed=seed, **overrides)
    splits = load_splits(dataset)
    extra: dict[str, Any] = {}
    if shuffle_labels is not None:
        splits = shuffled_labels(splits, shuffle_labels)
        extra = {"shuffle_labels": int(shuffle_labels)}
    spec = get_architecture(arch)
    if splits.input_size < spec.min_input_size:
        raise ConfigError(f"{arch} needs inputs of at least {spec.min_input_size} px; dataset has {splits.input_size} px")
    spec.check_input_size(splits.input_size)  # a ViT's patch size must divide it
    model, parent = _start_model(arch, splits, width, pretrain, in_chans, pretrain_kwargs or {}, progress)
    base = name or cell_name(splits.name, arch, width, pretrain, degree if protocol == "single" else "tlft", seed,
                             f"-shuffled{int(shuffle_labels)}" if shuffle_labels is not None else "")
    common = dict(arch=arch, width=width, pretrain=pretrain, config=cfg, progress=progress, extra_metrics=extra)
    if protocol == "single":
        phase = "tl" if degree == "tl" else "ft"
        return [_fit_and_save(model, splits, name=base, degree=degree, phase=phase, parent_id=parent, **common)]
    tl = _fit_and_save(model, splits, name=f"{base}-tl", degree="tl", phase="tl", parent_id=parent, **common)
    ft = _fit_and_save(model, splits, name=f"{base}-ft", degree="all", phase="ft", parent_id=tl.id,
                       **{**common, "config": replace(cfg, lr=cfg.lr * FT_LR_FACTOR, epochs=ft_epochs or cfg.epochs,
                                                      min_epochs=min(cfg.min_epochs, ft_epochs or cfg.epochs))})
    return [tl, ft]


FT_LR_FACTOR = 0.5  # full fine-tuning continuing from a trained head uses half the learning rate


def _existing(names: Sequence[str]) -> dict[str, Any]:
    with session_scope() as session:
        rows = session.scalars(select(Checkpoint).where(Checkpoint.name.in_(list(names)))).all()
        return {r.name: r.id for r in rows if Path(r.path).is_file()}


GRID_EPOCHS: dict[str, int] = {"tl": 12, "1conv": 12, "2conv": 12, "3conv": 12, "4conv": 12, "all": 12}
GRID_INIT = ("previous", "tl", "pretrained")


def train_grid(
    dataset: str | DataSplits,
    archs: Sequence[str] = ("vgg16",),
    pretrains: Sequence[str] = ("natural", "mri"),
    degrees: Sequence[str] = DEGREES,
    width: float = 0.125,
    seed: int = 0,
    epochs: int | dict[str, int] | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    init: str = "previous",
    pretrain_kwargs: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    progress: Progress = silent,
) -> list[dict[str, Any]]:
    """The MRI study's design: every (arch, pre-training, degree) cell, resumable (a cell whose
    checkpoint exists is skipped; missing pre-training checkpoints are made first).

    ``init`` - where a ``kconv``/``all`` cell starts:
      * ``"previous"`` (default, gradual unfreezing as in ULMFiT, Howard & Ruder 2018): from the
        previous degree's trained cell (tl → 1conv → … → all). Blocks a degree freezes are still
        the pre-trained ones, so each cell's frozen part is exactly as documented; what differs
        from independent runs is the trainable part's starting point (already adapted).
      * ``"tl"``: from the TL cell (trained head, pre-trained backbone).
      * ``"pretrained"``: from the pre-trained backbone with a fresh head (fully independent).
    In every mode the TL cell is the parent of the other degrees (phase ``ft``), so each is a
    TL→FT pair for drift analysis; ``metrics["init_from"]`` names the checkpoint it started from.
    ``epochs``: one number, or per degree (default :data:`GRID_EPOCHS`). Frozen-block outputs are
    computed once per (arch, source) and shared by its cells.

    Returns one dict per cell: arch, pretrain, degree, name, checkpoint_id, skipped, accuracy,
    train_time_s.
    """
    check_names(archs, pretrains, degrees)
    _check_choice(init, GRID_INIT, "grid initialisation")
    cfg = config or TrainConfig()
    overrides = {k: v for k, v in (("lr", lr), ("batch_size", batch_size)) if v is not None}
    cfg = replace(cfg, seed=seed, **overrides)
    if isinstance(epochs, int):
        per_degree = {d: epochs for d in DEGREES}
    elif config is not None and epochs is None:
        per_degree = {d: config.epochs for d in DEGREES}
    else:
        per_degree = {**GRID_EPOCHS, **(epochs or {})}
    splits = load_splits(dataset)
    for a in archs:  # before any cell: too small, or not a multiple of a ViT's patch size
        get_architecture(a).check_input_size(splits.input_size)
    order = [d for d in DEGREES if d in degrees]
    if any(d != "tl" for d in order) and "tl" not in order and init != "pretrained":
        order = ["tl", *order]
    cells = [(a, p, d) for a in archs for p in pretrains for d in order]
    names = {c: cell_name(splits.name, c[0], width, c[1], c[2], seed) for c in cells}
    done = _existing(list(names.values()))
    out: list[dict[str, Any]] = []
    total = len(cells)
    caches: dict[tuple[str, str], dict] = {}  # frozen-block outputs shared by the cells of (arch, source)
    for i, (a, p, d) in enumerate(cells):
        name = names[(a, p, d)]
        progress(i * 1000, total * 1000, f"grid cell {i + 1}/{total}: {a} {p} {d}")
        if name in done:
            out.append({"arch": a, "pretrain": p, "degree": d, "name": name, "checkpoint_id": done[name], "skipped": True})
            continue
        sub = _subprogress(progress, i, total)
        tl_id = done.get(names.get((a, p, "tl"), ""))
        start_id = None
        if d != "tl" and init == "tl":
            start_id = tl_id
        elif d != "tl" and init == "previous":
            earlier = [names[(a, p, e)] for e in order[: order.index(d)]]
            start_id = next((done[n] for n in reversed(earlier) if n in done), None)
        if start_id is not None:
            model, _ = load(start_id)
        else:
            model, _ = _start_model(a, splits, width, p, None, pretrain_kwargs or {}, sub)
        parent = _pretrain_parent(a, width, p) if (d == "tl" or tl_id is None) else tl_id
        phase = "tl" if d == "tl" else "ft"
        lr_cell = cfg.lr * (FT_LR_FACTOR if start_id is not None else 1.0)
        cell_cfg = replace(cfg, lr=lr_cell, epochs=per_degree[d])
        info = _fit_and_save(model, splits, name=name, arch=a, width=width, pretrain=p, degree=d,
                             phase=phase, parent_id=parent, config=cell_cfg, progress=sub,
                             feature_cache=caches.setdefault((a, p), {}), extra_metrics={"init_from": start_id})
        done[name] = info.id
        if d == order[-1]:
            caches.pop((a, p), None)  # free the memory once the source's cells are done
        out.append({"arch": a, "pretrain": p, "degree": d, "name": name, "checkpoint_id": info.id, "skipped": False})
    progress(total * 1000, total * 1000, "grid done")
    with session_scope() as session:
        for row in out:
            ck = session.get(Checkpoint, row["checkpoint_id"])
            row["accuracy"] = (ck.metrics or {}).get("accuracy") if ck else None
            row["train_time_s"] = ck.train_time_s if ck else None
    return out


def _pretrain_parent(arch: str, width: float, source: str) -> int | None:
    """Id of the newest pre-training checkpoint of (source, arch, width), None for ``none``."""
    if source == "none":
        return None
    with session_scope() as session:
        return session.scalar(
            select(Checkpoint.id).where(Checkpoint.phase == "pretrain", Checkpoint.pretrain == source,
                                        Checkpoint.arch == arch, Checkpoint.width == float(width))
            .order_by(Checkpoint.id.desc()).limit(1)
        )


def _subprogress(progress: Progress, index: int, total: int) -> Progress:
    """Map a cell's own (done, total) onto the grid's bar: cell i covers [i, i+1)."""

    def report(done: int, sub_total: int, message: str) -> None:
        frac = done / sub_total if sub_total else 0.0
        progress(int(round((index + frac) * 1000)), total * 1000, message)

    return report
