"""Benchmark: the demo grid (vgg16 width 0.125; natural + mri pre-training; six degrees).

Prints one row per cell (test accuracy, seconds, epochs run, seconds per epoch and its ratio to
the ``all`` cell of the same source, i.e. what frozen-block caching saves), the pre-training
times, and the grid total against the 12-minute budget. Baseline measured in the same run: one
full forward+backward step of 64 images (the issue's prototype measured 0.85 s on this VM).

    python bench/training.py [--dataset mri-lesions] [--home DIR] [--threads N] [--quick]

Uses its own workspace (default ``./workspace-bench``) so the user's one is untouched; the
dataset is built there with ``xai_core.data.build_dataset`` (2000 images, 128 px) if missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sqlalchemy import delete

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from db import Checkpoint, session_scope  # noqa: E402
from models.grid import train_grid  # noqa: E402
from models.splits import load_splits  # noqa: E402
from xai_core.config import device as pick_device  # noqa: E402
from xai_core.data import build_dataset  # noqa: E402
from xai_core.demo import full_settings, grid_kwargs, quick_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mri-lesions")
    parser.add_argument("--home", default=str(Path(__file__).resolve().parents[1] / "workspace-bench"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="2 degrees, fewer steps: a smoke run")
    parser.add_argument("--fresh", action="store_true", help="delete the bench checkpoints first (re-time all)")
    args = parser.parse_args()
    os.environ["XAUDIT_HOME"] = args.home
    if args.threads:
        torch.set_num_threads(args.threads)
    full = full_settings()
    try:
        splits = load_splits(args.dataset)
    except Exception:  # noqa: BLE001 - build it once in the bench workspace
        print(f"building dataset {args.dataset} ({full.n_images} images, {full.size} px) in {args.home} ...", flush=True)
        build_dataset(args.dataset, full.data)
        splits = load_splits(args.dataset)
    if args.fresh:
        with session_scope() as session:
            session.execute(delete(Checkpoint))
        shutil.rmtree(Path(args.home) / "checkpoints", ignore_errors=True)

    # baseline: one full step (forward + backward + AdamW) on 64 images at the dataset's size
    torch.manual_seed(0)
    net = models.build("vgg16", 2, 1, 0.125)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.as_tensor(splits.train[0][:64])[:, None]
    y = torch.as_tensor(splits.train[1][:64])
    times = []
    for _ in range(4):
        t = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step_s = float(np.median(times[1:]))

    settings = quick_settings(full) if args.quick else full
    t0 = time.perf_counter()
    rows = train_grid(splits, **grid_kwargs(settings))  # exactly the demo's grid
    total = time.perf_counter() - t0

    with session_scope() as session:
        pre = session.query(Checkpoint).filter(Checkpoint.phase == "pretrain").all()
        pre_rows = [(c.pretrain, c.train_time_s, (c.metrics or {}).get("pretext_accuracy")) for c in pre]
        cells = {r["checkpoint_id"]: session.get(Checkpoint, r["checkpoint_id"]) for r in rows}
        info = {i: (len(c.history), c.train_time_s, (c.metrics or {}).get("accuracy"),
                    (c.metrics or {}).get("balanced_accuracy"), (c.metrics or {}).get("roc_auc")) for i, c in cells.items()}
    print(f"\nmachine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, device "
          f"{pick_device(None)}; dataset {splits.name}: {len(splits.train[1])} train / "
          f"{len(splits.val[1])} val / {len(splits.test[1])} test at {splits.input_size} px")
    print(f"baseline: one full training step of 64 images = {step_s:.3f} s "
          f"(an epoch of {len(splits.train[1])} images ~ {step_s * len(splits.train[1]) / 64:.1f} s)")
    print("\npre-training   seconds  pretext-acc")
    for src, sec, acc in pre_rows:
        print(f"{src:<13}{sec:>9.1f}  {acc if acc is None else f'{acc:.3f}':>11}")
    print("\nsource   degree  test-acc  bal-acc  roc-auc  epochs  seconds  s/epoch  vs all  vs baseline-epoch")
    base_epoch = step_s * len(splits.train[1]) / 64
    for src in ("natural", "mri"):
        src_rows = [r for r in rows if r["pretrain"] == src]
        per_all = next((info[r["checkpoint_id"]][1] / max(1, info[r["checkpoint_id"]][0])
                        for r in src_rows if r["degree"] == "all"), float("nan"))
        for r in src_rows:
            ep, sec, acc, bal, auc = info[r["checkpoint_id"]]
            spe = sec / max(1, ep)
            print(f"{src:<9}{r['degree']:<8}{acc:>8.3f}{bal:>9.3f}{(auc or float('nan')):>9.3f}{ep:>8}{sec:>9.1f}"
                  f"{spe:>9.2f}{spe / per_all:>8.2f}{spe / base_epoch:>10.2f}"
                  + ("  (done before)" if r["skipped"] else ""))
    budget = 12 * 60
    print(f"\ngrid wall time this run: {total:.0f} s (budget {budget} s, ratio {total / budget:.2f}); "
          f"sum of stored train times (incl. pre-training): "
          f"{sum(v[1] for v in info.values()) + sum(p[1] for p in pre_rows):.0f} s")


if __name__ == "__main__":
    main()
