"""Benchmark: a study through ``--executor local`` vs ``--executor ray`` with one and two local Ray
nodes (total time, Ray's overhead per task). Goal: Ray overhead under 10 % of the local
executor's time with one node.

The study is the demo study (studies/demo.yaml) scaled down so that three runs fit in minutes on
two cores (stated in the output): same structure (two pre-training sources, TL and all-layers FT
cells, every VGG-16 method with the demo's parameters, ground-truth metrics with baselines, drift
with LayerCAM vs Grad-CAM++) at the demo's 128 px and method parameters, 200 images, 2 epochs, 20 maps
per checkpoint and method (one shard, as the demo's 40 maps are two).
``--full`` runs studies/demo.yaml as shipped instead (both parts, the report: what ``make demo``
builds; ~35 min for the three runs on two cores).
Each run gets a fresh workspace and a fresh database on a throw-away PostgreSQL server (Ray needs
one; the local run uses it too). Ray's cluster start is not counted; connecting, the workers'
start-up and every task round trip are. A probe on a fresh one-node cluster splits Ray's fixed cost:
connecting, the first (no-op) task, the worker's imports of the task modules, and the round trip of
a no-op task. Appends the tables to bench/RESULTS.md.

    XAUDIT_THREADS=1 python bench/sweep.py [--no-record] [--factor K | --full]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from db import reset_engines  # noqa: E402
from tests.postgres import free_port, start_cluster  # noqa: E402
from xai_core.config import configure_threads  # noqa: E402
from xai_core.sweep import parse_study, run_sweep  # noqa: E402
from xai_core.sweep.tracking import task_frame  # noqa: E402

RAY = str(Path(sys.executable).parent / "ray")
SCALE = {"n": 200, "size": 128, "epochs": 2, "pretrain_steps": 12, "samples": 20}


def scaled_demo(factor: int = 1) -> dict:
    """studies/demo.yaml's MRI part at :data:`SCALE`, with ``factor`` times the images and the maps per
    checkpoint and method (the same tasks, each about ``factor`` times longer)."""
    data = yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text())
    part = data["parts"]["mri"]
    data["parts"] = {"mri": part}  # the drift study's part is left out
    part["dataset"]["build"].update(n=SCALE["n"] * factor, size=SCALE["size"])
    part["models"]["degrees"] = ["tl", "all"]
    part["models"]["pretrain"].update(steps=SCALE["pretrain_steps"], size=SCALE["size"])
    part["models"]["training"].update(epochs=SCALE["epochs"], min_epochs=1)
    part["methods"].update(samples=SCALE["samples"] * factor, shard=SCALE["samples"] * factor)
    data["report"] = False
    return data


def study_data(full: bool, factor: int) -> dict:
    """The study a run sweeps: demo.yaml as shipped (``full``) or :func:`scaled_demo`."""
    return yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text()) if full else scaled_demo(factor)


def ray(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
           # a throw-away cluster on 127.0.0.1 without token auth: Ray >= 2.59 turns it on when
           # ~/.ray/auth_token exists, and ray.init(address=...) does not send the token (ray-project/ray#64755)
           "RAY_AUTH_MODE": "disabled"}
    subprocess.run([RAY, *args], check=True, capture_output=True, timeout=180, env=env)


def start_ray(nodes: int) -> str:
    """A local Ray cluster of ``nodes`` one-CPU nodes on 127.0.0.1; returns its address."""
    port = free_port()
    common = ("--num-cpus=1", "--node-ip-address=127.0.0.1", "--object-store-memory=80000000",
              "--disable-usage-stats")
    ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
    for _ in range(nodes - 1):
        ray("start", f"--address=127.0.0.1:{port}", *common)
    return f"127.0.0.1:{port}"


def _noop() -> int:
    return 0


def _import_tasks() -> int:
    import xai_core.sweep.tasks  # noqa: F401  (what a sweep task's worker imports first)

    return 0


def ray_probe(rounds: int = 100) -> dict[str, float]:
    """Ray's fixed costs on a fresh one-node cluster, as the sweep's executor meets them: seconds to
    connect, to run the first no-op task (a worker starts), to import the task modules in that worker,
    and the mean round trip of a no-op task submitted and awaited one at a time (ms)."""
    import ray as ray_api

    from xai_core.sweep.executors import worker_env

    address = start_ray(1)
    try:
        t0 = time.perf_counter()
        ray_api.init(address=address, runtime_env={"env_vars": worker_env()}, log_to_driver=False,
                     logging_level="ERROR")
        t1 = time.perf_counter()
        noop, imports = ray_api.remote(_noop), ray_api.remote(_import_tasks)
        ray_api.get(noop.remote())
        t2 = time.perf_counter()
        ray_api.get(imports.remote())
        t3 = time.perf_counter()
        for _ in range(rounds):
            ray_api.get(noop.remote())
        t4 = time.perf_counter()
    finally:
        ray_api.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
    return {"connect": t1 - t0, "first task": t2 - t1, "imports": t3 - t2, "round trip ms": (t4 - t3) / rounds * 1000}


def one_run(executor: str, nodes: int, url: str, folder: Path, data: dict) -> tuple[float, float, list[int]]:
    """Wall seconds of one sweep in a fresh workspace, the seconds spent inside its tasks (summed over
    tasks, as the workers measured them), and its task count per stage."""
    folder.mkdir()
    os.environ["XAUDIT_HOME"] = str(folder)
    os.environ["DATABASE_URL"] = url
    reset_engines()
    study = parse_study(data, "demo")
    address = start_ray(nodes) if executor == "ray" else None
    try:
        t0 = time.perf_counter()
        result = run_sweep(study, executor, address)
        seconds = time.perf_counter() - t0
    finally:
        if executor == "ray":
            subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
    if not result.ok:
        raise SystemExit(f"{executor} run failed: {result.failed[:2]}")
    inside = float(task_frame(result.run_id)["seconds"].sum())
    return seconds, inside, [len(p.tasks) for p in result.stages]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--factor", type=int, default=1, help="images and maps per checkpoint x this (longer tasks)")
    size.add_argument("--full", action="store_true", help="studies/demo.yaml as shipped (both parts, the report)")
    args = parser.parse_args()
    threads = configure_threads()
    data = study_data(args.full, args.factor)
    pg = start_cluster()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="xaudit-bench-sweep-") as tmp:
            for executor, nodes in (("local", 0), ("ray", 1), ("ray", 2)):
                url = pg.url(pg.create_database())
                seconds, inside, tasks = one_run(executor, nodes, url, Path(tmp) / f"{executor}{nodes}", data)
                rows.append((executor, nodes, sum(tasks), seconds, inside))
                print(f"{executor} {nodes or ''}: {tasks} tasks per stage, {seconds:.1f} s ({inside:.1f} s in tasks)",
                      flush=True)
    finally:
        reset_engines()
        pg.stop()
    probe = ray_probe()
    base, base_out = rows[0][3], rows[0][3] - rows[0][4]
    lines = ["| executor | nodes (1 CPU each) | tasks | total s | vs local | in tasks s | outside tasks s | "
             "overhead per task (wall) | overhead per task (outside tasks) |", "|---|---|---|---|---|---|---|---|---|"]
    for executor, nodes, tasks, seconds, inside in rows:
        wall = "—" if executor == "local" else f"{(seconds - base) / tasks * 1000:+.0f} ms"
        out = "—" if executor == "local" else f"{(seconds - inside - base_out) / tasks * 1000:+.0f} ms"
        lines.append(f"| {executor} | {nodes or '—'} | {tasks} | {seconds:.1f} | {seconds / base:.2f}× | {inside:.1f} | "
                     f"{seconds - inside:.1f} | {wall} | {out} |")
    table = "\n".join(lines)
    load = os.getloadavg()[0]
    what = ("as shipped (both parts and the report: what `make demo` builds)" if args.full else
            f"scaled down ({SCALE['n'] * args.factor} images of {SCALE['size']} px, degrees tl and all, {SCALE['epochs']} "
            f"epochs, {SCALE['pretrain_steps']} pre-training steps, {SCALE['samples'] * args.factor} maps per checkpoint "
            "and method, every VGG-16 method)")
    header = (f"## Sweeps: local vs Ray executor (bench/sweep.py, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n\n"
              f"Machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, XAUDIT_THREADS="
              f"{threads}, load average {load:.1f} at the end. Study: studies/demo.yaml {what}. Ray's cluster start is "
              "not counted; connecting and worker start-up are.\n")
    table += ("\n\nRay's fixed costs (fresh one-node cluster): connect "
              f"{probe['connect']:.2f} s, first no-op task (worker start) {probe['first task']:.2f} s, the worker's "
              f"imports of the task modules {probe['imports']:.2f} s, no-op task round trip {probe['round trip ms']:.1f} ms.")
    print(header)
    print(table)
    if not args.no_record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as handle:
            handle.write("\n" + header + "\n" + table + "\n")


if __name__ == "__main__":
    main()
