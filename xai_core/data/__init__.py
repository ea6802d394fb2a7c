"""Datasets: the MRI lesion benchmark generator, import of labelled images, loading.

``build_dataset(name, n=..., size=..., seed=...)``, ``import_dataset(folder, name)``,
``load_dataset(name, split=None) -> LoadedDataset`` (``cached_dataset``: the same, kept for the process),
``sample_arrays(name, sample_pk)`` (one image and mask; ``sample_region``: its second mask),
``list_datasets()``, ``synthesize(params)``.
"""

from xai_core.data.dataset import (
    CLASS_NAMES,
    LoadedDataset,
    build_dataset,
    cached_dataset,
    dataset_exists,
    list_datasets,
    load_dataset,
    sample_arrays,
    sample_region,
)
from xai_core.data.importer import import_dataset
from xai_core.data.params import GeneratorParams, make_params
from xai_core.data.synth import Synthesis, synthesize

__all__ = [
    "CLASS_NAMES",
    "GeneratorParams",
    "LoadedDataset",
    "Synthesis",
    "build_dataset",
    "cached_dataset",
    "dataset_exists",
    "import_dataset",
    "list_datasets",
    "load_dataset",
    "make_params",
    "sample_arrays",
    "sample_region",
    "synthesize",
]
