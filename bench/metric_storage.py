"""Benchmark of the metric jobs and the pages' metric queries at the full demo workspace's size.

A throw-away SQLite workspace with 10 checkpoints (5 TL→FT pairs) × 2 methods × 500 test images
= 10,000 stored maps (64×64, written through the attribution store), then timed:
``evaluate`` (every registered ground-truth metric of the 10,000 maps plus the two chance-level
maps of the same samples), ``drift`` (the 5 pairs × 2 methods on their true positives), and the
queries behind the Benchmark and Drift pages (``gt_frame``, ``drift_frame``, ``chance_precision``,
``count_rows``: median of ``--repeat`` cold calls).

    python bench/metric_storage.py [--images 500] [--size 64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.seed import add_checkpoint, add_dataset_rows, add_maps  # noqa: E402
from xai_core.metrics import drift, evaluate, queries  # noqa: E402

METHODS = ("saliency", "gradcam")


def seed(n_images: int, size: int) -> SimpleNamespace:
    """Dataset rows, 5 TL→FT checkpoint pairs (about 90% correct) and their maps; returns the
    in-memory dataset ``evaluate`` reads masks and images from."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3, 0.7, (2, n_images, 1, 1)) * size
    masks = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size / 10) ** 2
    labels = [i % 2 for i in range(n_images)]
    pks = add_dataset_rows("bench", masks, labels)
    images = rng.random((n_images, size, size)).astype(np.float32)
    for pair in range(5):
        parent = None
        for phase in ("tl", "ft"):
            preds = [y if rng.random() < 0.9 else 1 - y for y in labels]
            ck = add_checkpoint(f"ck{pair}-{phase}", "resnet50", "imagenet", "tl" if phase == "tl" else "all", phase,
                                pks, preds, labels, parent_id=parent, input_size=size)
            parent = ck
            for method in METHODS:
                maps = masks * rng.uniform(0.5, 2.0) + rng.random((n_images, size, size))
                add_maps(ck, method, pks, maps.astype(np.float32))
    return SimpleNamespace(images=images, masks=masks, sample_pks=np.asarray(pks), labels=np.asarray(labels))


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xaudit-bench-") as home:  # removed afterwards
        os.environ["XAUDIT_HOME"] = home
        os.environ.pop("DATABASE_URL", None)
        run(args)


def run(args: argparse.Namespace) -> None:
    data = seed(args.images, args.size)
    print(f"{10 * len(METHODS) * args.images} maps of {args.size}x{args.size}, load avg {os.getloadavg()[0]:.1f}")
    t_eval = timed(lambda: evaluate(dataset=data))
    t_drift = timed(lambda: drift())
    gt, dr = queries.gt_frame("correct"), queries.drift_frame()
    print(f"evaluate: {t_eval:.2f} s ({len(gt)} maps in the correct selection); drift: {t_drift:.2f} s ({len(dr)} pairs)")
    for name, fn in (("gt_frame('correct')", lambda: queries.gt_frame("correct")),
                     ("gt_frame('all')", lambda: queries.gt_frame("all")),
                     ("drift_frame()", queries.drift_frame),
                     ("chance_precision()", queries.chance_precision),
                     ("count_rows()", queries.count_rows)):
        times = [timed(fn) for _ in range(args.repeat)]
        print(f"{name:<22} median {statistics.median(times) * 1000:8.1f} ms  (min {min(times) * 1000:.1f})")
    print(f"load avg at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
