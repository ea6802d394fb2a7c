"""Benchmark: ``xaudit data build --n 2000 --size 128`` (target: under 2 minutes on 2 cores).

Times, in a fresh temporary workspace, the real console script (a new process, imports included)
with 1 and 2 worker processes, then ``load_dataset`` of the result from the stacked cache versus
from the NIfTI files alone (the baseline a cache-less loader would pay). Prints a table; the
numbers go to bench/RESULTS.md. Usage: ``python bench/data_build.py [--n 2000] [--size 128]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XAUDIT = ROOT / ".venv" / "bin" / "xaudit"
sys.path.insert(0, str(ROOT))

from xai_core.data import load_dataset  # noqa: E402


def _build(home: Path, name: str, n: int, size: int, workers: int) -> float:
    env = {**os.environ, "XAUDIT_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    cmd = [str(XAUDIT) if XAUDIT.exists() else "xaudit", "data", "build", "--name", name, "--n", str(n),
           "--size", str(size), "--seed", "0", "--workers", str(workers)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.nii.gz")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="xaudit-bench-data-"))
    try:
        t1 = _build(home, "w1", args.n, args.size, 1)
        t2 = _build(home, "w2", args.n, args.size, 2)
        same = _digest(home / "datasets" / "w1") == _digest(home / "datasets" / "w2")
        os.environ["XAUDIT_HOME"] = str(home)
        t0 = time.perf_counter()
        cached = load_dataset("w1")
        t_cache = time.perf_counter() - t0
        shutil.rmtree(home / "datasets" / "w1" / "cache")
        t0 = time.perf_counter()
        files = load_dataset("w1")
        t_files = time.perf_counter() - t0
        equal = bool((cached.images == files.images).all() and (cached.masks == files.masks).all())
        print(f"data build benchmark: n={args.n}, size={args.size}, cores={os.cpu_count()}")
        print(f"{'what':<44} {'seconds':>8} {'ratio':>8}")
        print(f"{'build, 1 worker (CLI process)':<44} {t1:8.1f} {t1 / 120:8.2f}  (vs the 120 s target)")
        print(f"{'build, 2 workers (CLI process)':<44} {t2:8.1f} {t2 / t1:8.2f}  (vs 1 worker; same bytes: {same})")
        print(f"{'load_dataset, stacked cache':<44} {t_cache:8.2f} {t_cache / t_files:8.3f}  (vs NIfTI files)")
        print(f"{'load_dataset, NIfTI files only (baseline)':<44} {t_files:8.2f} {1.0:8.2f}  (arrays equal: {equal})")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
