"""Attribution on the second region of a suppressor or confounder benchmark (xai_core.data.regions).

``region_share`` (registered ground-truth metric, ``needs_region``): the share of a map's
absolute attribution that lies in the second region ``R``::

    share = Σ_{p ∈ R} |a_p| / Σ_p |a_p|

the relevance mass accuracy of Arras et al. 2022 (Quantus ``RelevanceMassAccuracy``) with ``R``
in place of the lesion. In a suppressor benchmark ``R`` carries no class information, so any mass
there is a false-positive attribution (Wilming et al. 2022; Clark et al. 2024, XAI-TRIS); in a
confounder benchmark mass there shows the model (or the method) following the marker instead of
the lesion. Lower is better. A constant (incl. all-zero) map is the uniform map: ``|R| / HW``,
which is also the chance level a method is compared with. It is NaN where a sample has no region
(a dataset without a variant, or a confounder image without the marker): the evaluate job stores
it only for samples whose second mask is not empty.

:func:`region_frame` and :func:`region_summary` are what the Benchmark page shows: per dataset and
method, the mean share with its bootstrap 95% CI next to the chance share, and whether the method
puts more of its mass on the region than a uniform map would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from db import Dataset, Sample, session_scope
from xai_core.data.dataset import cached_dataset
from xai_core.metrics.ground_truth import MapBatch, ground_truth_metrics
from xai_core.metrics.queries import gt_frame
from xai_core.metrics.registry import register_ground_truth_metric
from xai_core.metrics.statistics import summarise

METRIC = "region_share"


@register_ground_truth_metric(
    METRIC, label="share of attribution on the suppressor/confounder region", better="lower",
    value_range=(0.0, 1.0), needs_region=True,
    paper="Arras et al. 2022 (relevance mass) on the second region; Wilming et al. 2022; Clark et al. 2024 (XAI-TRIS)",
    help="Share of the map's total |attribution| on the second region (suppressor or confounder marker); "
         "a uniform map scores the region's share of the image.")
def _region_share(b: MapBatch) -> np.ndarray:
    if b.r is None:
        return np.full(len(b.v), np.nan)
    size = b.r.sum(axis=1)
    on = np.sum(b.v, axis=1, where=b.r).astype(np.float64)
    total = b.v.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, on / np.where(total > 0, total, 1.0), size / b.v.shape[1])
    return np.where(size > 0, share, np.nan)


def region_share(attributions: Any, masks: Any, regions: Any) -> np.ndarray:
    """``(N,)`` share of ``|a|`` on ``regions`` (``(N, H, W)`` bool); NaN where a region is empty."""
    return ground_truth_metrics(attributions, masks, metrics=[METRIC], regions=regions)[METRIC]


def region_frame(selection: str = "correct") -> pd.DataFrame:
    """Per stored ``region_share`` value: the :func:`~xai_core.metrics.queries.gt_frame` columns
    plus ``dataset``, ``variant`` (suppressor | confounder), ``region_px`` (pixels of the sample's
    second mask) and ``chance`` (``region_px / HW``, a uniform map's share)."""
    frame = gt_frame(selection, metrics=[METRIC])
    if frame.empty:
        return frame.assign(dataset=pd.Series(dtype=str), variant=pd.Series(dtype=str),
                            region_px=pd.Series(dtype="int64"), chance=pd.Series(dtype=float))
    pks = sorted({int(p) for p in frame["sample_pk"]})
    with session_scope() as session:
        rows = session.execute(select(Sample.id, Dataset.name, Dataset.params)
                               .join(Dataset, Sample.dataset_id == Dataset.id).where(Sample.id.in_(pks))).all()
    where = {int(pk): (name, str((params or {}).get("variant", "none"))) for pk, name, params in rows}
    frame["dataset"] = [where[int(p)][0] for p in frame["sample_pk"]]
    frame["variant"] = [where[int(p)][1] for p in frame["sample_pk"]]
    px = np.zeros(len(frame), np.int64)
    share = np.zeros(len(frame))
    for name in frame["dataset"].unique():  # one lookup per dataset, vectorised inside
        ds = cached_dataset(name)
        rows_of = frame["dataset"].to_numpy() == name
        if ds.regions is None:
            continue
        pos = pd.Series(np.arange(len(ds.sample_pks)), index=ds.sample_pks)
        idx = pos.loc[frame.loc[rows_of, "sample_pk"].astype("int64")].to_numpy()
        px[rows_of] = ds.regions[idx].sum(axis=(1, 2))
        share[rows_of] = px[rows_of] / float(np.prod(ds.regions.shape[1:]))
    return frame.assign(region_px=px, chance=share)


def region_summary(frame: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per (dataset, variant, method): ``n``, mean ``region_share`` and its bootstrap 95% CI
    (``ci_low, ci_high``), the mean ``chance`` share of the same samples, ``ratio = mean / chance``
    and ``verdict``: ``above chance`` (CI entirely above the chance share: the method puts mass on
    the region), ``below chance`` (CI entirely below) or ``at chance``."""
    keys = ["dataset", "variant", "method"]
    cols = [*keys, "n", "mean", "ci_low", "ci_high", "chance", "ratio", "verdict"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    summary = summarise(frame, keys, [METRIC], n_boot=n_boot)
    chance = frame.groupby(keys)["chance"].mean().rename("chance").reset_index()
    out = summary.merge(chance, on=keys, how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio"] = out["mean"] / out["chance"]
    out["verdict"] = np.select([out["ci_low"] > out["chance"], out["ci_high"] < out["chance"]],
                               ["above chance", "below chance"], "at chance")
    return out[cols].sort_values(["dataset", "mean"], ascending=[True, False], kind="stable").reset_index(drop=True)
