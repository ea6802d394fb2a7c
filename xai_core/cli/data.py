"""``xaudit data ...`` commands: build the lesion benchmark, import labelled images, list."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xai_core.cli.base import data_app, echo_rows
from xai_core.progress import TqdmProgress


class _LazyBar:
    """A tqdm bar opened at the first real progress, so early user errors print one line only."""

    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.bar is None and done == 0:
            return
        if self.bar is None:
            self.bar = TqdmProgress(self.desc)
        self.bar(done, total, message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@data_app.command("build")
def build(
    name: str = typer.Option("mri-lesions", "--name", help="Dataset name (folder under $XAUDIT_HOME/datasets)."),
    n: Optional[int] = typer.Option(None, "--n", help="Number of samples over all splits (a multiple of --classes) [2000]."),
    size: Optional[int] = typer.Option(None, "--size", help="Image side in pixels [128; 224 for the paper]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed [0]."),
    classes: Optional[int] = typer.Option(None, "--classes", help="2 = regular vs irregular [2]; 3..5 = the first K of "
                                          "ellipse, lobulated, spiculated, ring, multifocal."),
    anatomy: Optional[Path] = typer.Option(None, "--anatomy", help="Folder of T1 .nii/.nii.gz (+ X_mask files); default MNI152."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of parameters (keys = flag names with _)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset of this name."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (output is identical for any number)."),
    min_brain_fraction: Optional[float] = typer.Option(None, help="Slices with >= this fraction of the largest brain section [0.6]."),
    rotate_deg: Optional[float] = typer.Option(None, help="Max rotation in degrees [10]."),
    scale: Optional[float] = typer.Option(None, help="Max relative scaling [0.08]."),
    shear: Optional[float] = typer.Option(None, help="Max shear [0.04]."),
    translate: Optional[float] = typer.Option(None, help="Max translation, fraction of the side [0.03]."),
    elastic_spacing: Optional[float] = typer.Option(None, help="Elastic control-point spacing, fraction of the side [0.15]."),
    elastic_magnitude: Optional[float] = typer.Option(None, help="Elastic displacement, fraction of the side [0.012]."),
    bias_coeff: Optional[float] = typer.Option(None, help="Bias-field coefficient range +- [0.08]."),
    intensity_scale: Optional[float] = typer.Option(None, help="Max relative intensity scaling [0.1]."),
    noise_std: Optional[float] = typer.Option(None, help="Max Gaussian noise std [0.03]."),
    max_lesions: Optional[int] = typer.Option(None, help="Lesions per image: 1..k [3]."),
    lesion_area_min: Optional[float] = typer.Option(None, help="Min lesion area, fraction of the image [0.002]."),
    lesion_area_max: Optional[float] = typer.Option(None, help="Max lesion area, fraction of the image [0.010]."),
    max_aspect: Optional[float] = typer.Option(None, help="Max ellipse aspect ratio [2]."),
    irregular_style: Optional[str] = typer.Option(None, help="mixed | lobulated | spiculated [mixed]; --classes 2 only."),
    contrast_min: Optional[float] = typer.Option(None, help="Min lesion contrast [0.15]."),
    contrast_max: Optional[float] = typer.Option(None, help="Max lesion contrast [0.45]."),
    contrast_sign: Optional[str] = typer.Option(None, help="both | bright | dark [both]."),
    edge_width: Optional[float] = typer.Option(None, help="Soft-edge width, fraction of the side [0.015]."),
    train_frac: Optional[float] = typer.Option(None, help="Train fraction per class [0.7]."),
    val_frac: Optional[float] = typer.Option(None, help="Validation fraction per class [0.15]; test gets the rest."),
    variant: Optional[str] = typer.Option(None, "--variant", help="none [default] | suppressor (a region without class "
                                          "information tied to a nuisance on the lesion) | confounder (a marker outside "
                                          "the lesion that goes with the class); the second region gets its own mask."),
    suppressor_amplitude: Optional[float] = typer.Option(None, help="Suppressor: nuisance amplitude, uniform in [-a, a] [0.3]."),
    confounder_strength: Optional[float] = typer.Option(None, help="Confounder: P(marker present agrees with the class), 0..1 [0.9]."),
    region_area: Optional[float] = typer.Option(None, help="Suppressor disc / confounder square area, fraction of the image [0.006]."),
) -> None:
    """Generate the MRI lesion benchmark (artificial lesions with exact masks on real anatomy)."""
    knobs = {k: v for k, v in locals().items() if k not in ("name", "config", "overwrite", "workers")}
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.data import build_dataset, load_dataset, make_params
    from xai_core.data.dataset import check_name, dataset_root, ensure_new

    if knobs.get("anatomy") is not None:
        knobs["anatomy"] = str(Path(knobs["anatomy"]).expanduser().resolve())
    params = make_params(config, **knobs)
    ensure_new(check_name(name), overwrite)
    bar = _LazyBar(f"build {name}")
    try:
        build_dataset(name, params, overwrite=overwrite, workers=workers, progress=bar)
    finally:
        bar.close()
    ds = load_dataset(name)
    typer.echo(f"built {name}: {len(ds)} samples of {params.size}x{params.size}, classes {ds.class_names}, "
               "splits " + ", ".join(f"{s}={int((ds.splits == s).sum())}" for s in ("train", "val", "test")))
    typer.echo(str(dataset_root(name)))


@data_app.command("import")
def import_(
    folder: Path = typer.Argument(..., help="ImageFolder: one sub-folder per class (+ optional masks/)."),
    name: str = typer.Option(..., "--name", help="Dataset name."),
    split_csv: Optional[Path] = typer.Option(None, "--split-csv", help="CSV with path (or filename) and split columns."),
    size: Optional[int] = typer.Option(None, "--size", help="Common image side after padding to square [most common side]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stratified split when no CSV is given."),
    allow_unbalanced: bool = typer.Option(False, "--allow-unbalanced", help="Accept a class with < 10% of the largest."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset of this name."),
) -> None:
    """Import labelled PNG/JPEG/DICOM/NIfTI images as a dataset."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.data import import_dataset, load_dataset
    from xai_core.data.dataset import check_name, dataset_root, ensure_new

    ensure_new(check_name(name), overwrite)
    bar = _LazyBar(f"import {name}")
    try:
        import_dataset(folder, name, split_csv=split_csv, size=size, seed=seed,
                       allow_unbalanced=allow_unbalanced, overwrite=overwrite, progress=bar)
    finally:
        bar.close()
    ds = load_dataset(name)
    typer.echo(f"imported {name}: {len(ds)} images of {ds.images.shape[-1]} px, classes {ds.class_names}")
    typer.echo(str(dataset_root(name)))


@data_app.command("list")
def list_() -> None:
    """List the datasets of the workspace."""
    # lazy: only this command's stack is imported (xaudit --help and other commands stay fast)
    from xai_core.data import list_datasets

    def line(r: dict) -> str:
        classes = " ".join(f"{k}={v}" for k, v in r["class_counts"].items())
        splits = "/".join(str(r["split_counts"][s]) for s in ("train", "val", "test"))
        return f"{r['name']:<24} {r['kind']:<10} {r['n']:>6} {r['size']:>5}  {classes:<32} {splits}"

    echo_rows(list_datasets(), "no datasets; build one with: xaudit data build --name mri-lesions --n 2000 --size 128 --seed 0",
              f"{'name':<24} {'kind':<10} {'n':>6} {'size':>5}  {'classes':<32} train/val/test", line)
