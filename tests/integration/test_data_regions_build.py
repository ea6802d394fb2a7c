"""Suppressor/confounder datasets in the workspace: files, cache and loader of the second mask, the
default build without one, and ``evaluate`` storing ``region_share`` only where a region exists."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.seed import add_checkpoint, add_maps
from xai_core.data import build_dataset, load_dataset, sample_region
from xai_core.data.io import read_nifti
from xai_core.metrics import evaluate, list_ground_truth_metrics, region_share
from xai_core.metrics.queries import gt_frame
from xai_core.metrics.regions import region_frame, region_summary
from xai_core.metrics.stored import read_stored_maps

SIZE = 32


def test_variant_files_loader_and_cache(workspace: Path) -> None:
    build_dataset("sup", n=12, size=SIZE, seed=0, variant="suppressor")
    folder = workspace / "datasets" / "sup"
    rows = list(csv.DictReader((folder / "manifest.csv").open()))
    assert [r["region_path"] for r in rows] == [f"regions/{r['sample_id']}.nii.gz" for r in rows]
    assert yaml.safe_load((folder / "params.yaml").read_text())["variant"] == "suppressor"
    data = load_dataset("sup")
    assert data.region_kind == "suppressor" and data.regions.shape == data.masks.shape
    for i, r in enumerate(rows):  # the NIfTI files are the truth; the cache agrees with them
        np.testing.assert_array_equal(data.regions[i], read_nifti(folder / r["region_path"], ndim=2)[0] > 0)
    assert data.regions.any(axis=(1, 2)).all() and not (data.regions & data.masks).any()
    (folder / "cache" / "regions.npy").unlink()  # a lost cache is rebuilt from the files
    again = load_dataset("sup", split="train")
    np.testing.assert_array_equal(again.regions, data.regions[data.splits == "train"])
    region, kind = sample_region("sup", int(data.sample_pks[3]))
    assert kind == "suppressor" and np.array_equal(region, data.regions[3])

    build_dataset("plain", n=12, size=SIZE, seed=0)
    plain = load_dataset("plain")
    assert plain.regions is None and plain.region_kind == "" and sample_region("plain", int(plain.sample_pks[0])) == (None, "")
    assert not (workspace / "datasets" / "plain" / "regions").exists()
    assert "variant" not in yaml.safe_load((workspace / "datasets" / "plain" / "params.yaml").read_text())
    assert "region_path" not in (workspace / "datasets" / "plain" / "manifest.csv").read_text().splitlines()[0]


def test_evaluate_stores_region_share_where_a_region_exists(workspace: Path) -> None:
    """Confounder at strength 0.5: images without the marker get the lesion metrics only; the
    marked ones also get region_share, equal to the hand formula; a second run computes nothing;
    the page's summary puts a map built on the region above chance."""
    build_dataset("conf", n=24, size=SIZE, seed=3, variant="confounder", confounder_strength=0.5)
    data = load_dataset("conf")
    pks, labels = data.sample_pks.tolist(), data.labels.tolist()
    ck = add_checkpoint("vgg-conf", "vgg16", "imagenet", "all", "all", pks, labels, labels)  # all correct
    rng = np.random.default_rng(0)
    maps = (data.regions * 4.0 + data.masks * 2.0 + rng.random(data.masks.shape)).astype(np.float32)
    phash = add_maps(ck, "saliency", pks, maps)

    results = evaluate([ck], baselines=True)
    assert {r.method: r.computed for r in results} == {"saliency": 24, "baseline_random": 24, "baseline_sobel": 24}
    frame = gt_frame("correct")
    assert len(frame) == 3 * 24 and frame[list_ground_truth_metrics()].notna().all().all()
    region = gt_frame("correct", metrics=["region_share"])
    has = data.regions.any(axis=(1, 2))
    assert 0 < has.sum() < 24
    sal = region[region.method == "saliency"].sort_values("sample_pk")
    assert sal["sample_pk"].tolist() == [p for p, h in zip(pks, has) if h]
    stored = read_stored_maps(ck, "saliency", phash, sal["sample_pk"].tolist())  # the store keeps float16
    expected = region_share(stored, data.masks[has], data.regions[has])
    v = np.abs(stored.astype(np.float64))
    by_hand = (v * data.regions[has]).sum(axis=(1, 2)) / v.sum(axis=(1, 2))
    np.testing.assert_allclose(expected, by_hand, rtol=1e-6)
    np.testing.assert_allclose(sal["region_share"].to_numpy(), expected, atol=1e-12)

    again = evaluate([ck], baselines=True)
    assert sum(r.computed for r in again) == 0 and {r.skipped for r in again} == {24}

    summary = region_summary(region_frame("correct"), n_boot=200).set_index("method")
    assert set(summary.index) == {"saliency", "baseline_random", "baseline_sobel"}
    assert (summary["dataset"] == "conf").all() and (summary["variant"] == "confounder").all()
    assert summary.loc["saliency", "n"] == has.sum()
    chance = data.regions[has].sum(axis=(1, 2)).mean() / SIZE**2
    assert summary.loc["saliency", "chance"] == pytest.approx(chance, abs=1e-12)
    assert summary.loc["saliency", "mean"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert summary.loc["saliency", "verdict"] == "above chance"
    assert summary.loc["saliency", "ci_low"] > 2 * chance
