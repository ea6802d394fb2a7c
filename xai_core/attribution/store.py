"""The attribution map store: maps kept per (checkpoint sha256, method, parameter hash), indexed in the DB.

Layout under the workspace (``$XAUDIT_HOME``)::

    attributions/<sha256[:16]>/<method>-<params_hash[:16]>/chunk-0000.npy   (K, H, W) float16

Each chunk is written atomically (temporary file, then a no-clobber hard link to its final name)
and its ``AttributionMap`` rows (sample, chunk path relative to the workspace, row in the chunk,
explained class, seconds per map, device) are added in one DB transaction (:func:`index_chunk`).

Chunks are float16 (about 3 significant digits, relative error <= 2^-11): before the cast a
chunk is multiplied by a power of two that puts its largest magnitude in [2^14, 2^15), so tiny
gradients do not underflow and large relevances do not overflow; the exponent is kept in one
extra last row of the chunk (:func:`_encode`), and reads divide it out.

The job that fills the store is :mod:`xai_core.attribution.jobs`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from db import AttributionMap, session_scope
from xai_core.config import home, workspace_dir
from xai_core.errors import WorkspaceError

CHUNK = 64  # maps per chunk file


# ------------------------------------------------------------------------------------------
# chunk encoding: float16 with a power-of-two scale kept in an extra row
# ------------------------------------------------------------------------------------------
def _encode(maps: np.ndarray) -> np.ndarray:
    """(K, H, W) float32 -> (K + 1, H, W) float16; the last row's first value is log2(scale)."""
    peak = float(np.max(np.abs(maps))) if maps.size else 0.0
    exp = 0 if peak == 0.0 or not math.isfinite(peak) else int(math.floor(math.log2(peak)))
    scale_exp = 14 - exp  # peak lands in [2^14, 2^15): no overflow, smallest normal far below
    scale_exp = max(min(scale_exp, 60), -60)
    out = np.zeros((maps.shape[0] + 1, *maps.shape[1:]), dtype=np.float16)
    out[:-1] = (maps.astype(np.float64) * 2.0**scale_exp).astype(np.float16)
    out[-1].flat[0] = scale_exp
    return out


def _scale(chunk: np.ndarray) -> float:
    return 2.0 ** (-float(chunk[-1].flat[0]))


# ------------------------------------------------------------------------------------------
# paths and writes
# ------------------------------------------------------------------------------------------
def store_dir(sha256: str, method: str, phash: str) -> Path:
    """``attributions/<sha[:16]>/<method>-<hash[:16]>`` in the workspace (created)."""
    return workspace_dir("attributions", sha256[:16], f"{method}-{phash[:16]}")


def write_chunk(folder: Path, maps: np.ndarray) -> Path:
    """Write ``maps`` as the next free ``chunk-XXXX.npy`` in ``folder`` atomically; return its path.

    The file is complete before it gets its name (``os.link`` of a finished temporary file, which
    fails instead of overwriting when a concurrent job took the same index).
    """
    data = _encode(maps)
    fd, tmp = tempfile.mkstemp(prefix=".chunk-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        index = len(list(folder.glob("chunk-*.npy")))
        while True:
            final = folder / f"chunk-{index:04d}.npy"
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                index += 1
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def relative_path(path: Path) -> str:
    """``path`` relative to the workspace (what the index rows keep)."""
    return str(path.resolve().relative_to(home()))


def stored_pks(checkpoint_id: int, method: str, phash: str) -> set[int]:
    """Sample keys whose map is already indexed for (checkpoint, method, params hash)."""
    with session_scope() as session:
        return set(session.scalars(select(AttributionMap.sample_pk).where(
            AttributionMap.checkpoint_id == checkpoint_id, AttributionMap.method == method,
            AttributionMap.params_hash == phash)).all())


def index_chunk(ckpt_id: int, method: str, phash: str, hashed: dict[str, Any], pks: np.ndarray,
                 result: Any, path: Path) -> None:
    """One transaction: one ``AttributionMap`` row per map of the chunk (already-indexed skipped)."""
    rel = relative_path(path)
    per_map = result.seconds / max(1, len(pks))
    with session_scope() as session:
        existing = set(session.scalars(select(AttributionMap.sample_pk).where(
            AttributionMap.checkpoint_id == ckpt_id, AttributionMap.method == method,
            AttributionMap.params_hash == phash, AttributionMap.sample_pk.in_([int(p) for p in pks]))).all())
        session.add_all(
            AttributionMap(checkpoint_id=ckpt_id, method=method, params_hash=phash, params=hashed,
                           sample_pk=int(pk), target=int(t), store_path=rel, store_index=i,
                           seconds=float(per_map), device=result.device)
            for i, (pk, t) in enumerate(zip(pks.tolist(), result.targets.tolist(), strict=True))
            if int(pk) not in existing
        )


# ------------------------------------------------------------------------------------------
# reads
# ------------------------------------------------------------------------------------------
@dataclass
class StoredMaps:
    """Maps read from the store, with their index rows' metadata (request order)."""

    maps: np.ndarray  # (N, H, W) float32
    targets: np.ndarray  # (N,) int64
    seconds: np.ndarray  # (N,) compute seconds per map when it was made
    device: list[str]
    params_hash: str


def read_maps_by_hash(checkpoint_id: int, method: str, phash: str, sample_pks: Sequence[int]) -> StoredMaps:
    """Stored maps of (checkpoint, method, parameter hash) for ``sample_pks``, in that order;
    ``phash`` may be a prefix of the hash (as drift rows across methods keep it)."""
    pks = [int(p) for p in sample_pks]
    same_hash = (AttributionMap.params_hash == phash if len(phash) >= 64
                 else AttributionMap.params_hash.startswith(phash))
    with session_scope() as session:
        rows = session.execute(select(
            AttributionMap.sample_pk, AttributionMap.store_path, AttributionMap.store_index,
            AttributionMap.target, AttributionMap.seconds, AttributionMap.device,
        ).where(AttributionMap.checkpoint_id == int(checkpoint_id), AttributionMap.method == method,
                same_hash, AttributionMap.sample_pk.in_(pks))).all()
    by_pk = {r[0]: r for r in rows}
    missing = [p for p in pks if p not in by_pk]
    if missing:
        raise WorkspaceError(
            f"{len(missing)} of {len(pks)} {method} maps of checkpoint {checkpoint_id} are not stored "
            f"(e.g. sample {missing[0]}); run `xaudit explain --checkpoint {checkpoint_id} --methods {method}`"
        )
    ordered = [by_pk[p] for p in pks]
    paths = sorted({r[1] for r in ordered})
    root = home()
    chunks: dict[str, np.ndarray] = {}
    for rel in paths:
        file = root / rel
        if not file.is_file():
            raise WorkspaceError(f"attribution chunk {rel} is missing from the workspace; re-run `xaudit explain`")
        chunks[rel] = np.load(file, mmap_mode="r", allow_pickle=False)
    if not pks:
        return StoredMaps(np.empty((0, 0, 0), np.float32), np.empty(0, np.int64), np.empty(0), [], phash)
    first = chunks[ordered[0][1]]
    out = np.empty((len(pks), *first.shape[1:]), dtype=np.float32)
    positions = np.arange(len(pks))
    path_of = np.asarray([r[1] for r in ordered], dtype=object)
    index_of = np.asarray([r[2] for r in ordered], dtype=np.int64)
    for rel in paths:  # one vectorised gather per chunk file
        sel = positions[path_of == rel]
        chunk = chunks[rel]
        out[sel] = np.asarray(chunk[index_of[sel]], dtype=np.float32) * _scale(chunk)
    return StoredMaps(out, np.asarray([r[3] for r in ordered], dtype=np.int64),
                      np.asarray([r[4] for r in ordered], dtype=np.float64), [r[5] for r in ordered], phash)
