"""Aggregation and statistics behind the result tables.

* :func:`bootstrap_ci` / :func:`summarise`: mean, median and percentile-bootstrap 95% CI
  (Efron & Tibshirani 1993) per group.
* :func:`cluster_bootstrap` / :func:`clustered_summary`: the clustered (block) bootstrap over the
  independent units. The same test images are explained by every checkpoint and method, so their
  rows are not independent; the bootstrap resamples *images* (cluster ids) with replacement and
  keeps every row of each drawn image (all its checkpoints and methods). Done at once: per
  resample the draw counts ``W`` (``n_boot × n_clusters``) weight per-cluster sums and counts,
  ``mean_g = (W @ S)_g / (W @ N)_g`` (Davison & Hinkley 1997, §3.8; Field & Welsh 2007).
* :func:`stability_ranking` / :func:`ranking_agreement`: per-method ranking of architectures by
  drift stability, Kendall's tau-b between two methods' rankings and reversal flags (the chest
  X-ray study's "architecture-dependent" finding: the most stable architecture under one method
  is not under another).
* :func:`ranking_uncertainty`: Kendall's tau between two methods' architecture rankings with a
  bootstrap CI and the share of replicates that reverse the ranking (images resampled within
  each architecture).
* :func:`architecture_effect`: η², the share of the variance over images that the architecture
  explains, of several metrics on the same rows, with stratified bootstrap replicates (the chest
  X-ray study's "displacement stable, IoU drift architecture-dependent").
* :func:`near_chance`: the test accuracy below which a K-class model counts as near chance.
* :func:`accuracy_controlled_effect`: the MRI study's accuracy-controlled comparison — OLS of a
  checkpoint's mean explanation performance on its test accuracy and pre-training source;
  the source coefficient is the pre-training effect at matched accuracy, with a t-based CI.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from xai_core.errors import ConfigError, InvalidValueError
from xai_core.metrics.order import order_columns, sort_by_degree
from xai_core.metrics.registry import get_drift_metric

def bootstrap_ci(
    values: Any, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0, statistic: str = "mean"
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (or median) of ``values``; NaNs are dropped.

    Resamples are drawn at once as an ``(n_boot, n)`` index matrix. One value gives ``(x, x)``;
    none gives ``(nan, nan)``.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    samples = x[idx]
    stat = samples.mean(axis=1) if statistic == "mean" else np.median(samples, axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stat, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def _percentile_ci(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise percentile interval of a ``(n_boot, k)`` matrix (NaN resamples ignored)."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie in (0, 1), got {confidence}")
    alpha = (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        lo, hi = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
    return lo, hi


def cluster_draws(n_clusters: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_clusters)`` counts: how often each cluster is drawn in each resample of
    ``n_clusters`` draws with replacement (the index matrix of :func:`bootstrap_ci`, counted)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    flat = (idx + n_clusters * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_clusters).reshape(n_boot, n_clusters).astype(np.float64)


def cluster_bootstrap(
    frame: pd.DataFrame, value: str, by: Sequence[str], cluster: str = "sample_pk",
    n_boot: int = 2000, seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Clustered bootstrap of the mean of ``value`` per group ``by``.

    The units resampled are the distinct ``cluster`` ids (test images): each resample draws as
    many ids as there are, with replacement, and takes *all* rows of every drawn id — across
    every checkpoint and method — so the dependence between rows of the same image is kept.
    Group means of a resample are ``(W @ S) / (W @ N)`` with ``W`` the draw counts
    (:func:`cluster_draws`), ``S``/``N`` the per-cluster sums/counts of each group; this equals
    concatenating the drawn clusters' rows. Non-finite values are dropped first.

    Returns ``(groups, boot)``: ``groups`` has the ``by`` columns plus ``n`` (rows), ``n_clusters``
    and ``mean`` (on the data), one row per group in sorted order (degrees in the study's order);
    ``boot`` is ``(n_boot, n_groups)``, NaN where a resample drew no cluster of that group.
    Contrasts (differences of groups, rank correlations over groups) are computed row-wise on
    ``boot``, so every statistic of one resample uses the same drawn images.
    """
    missing = [c for c in [*by, value, cluster] if c not in frame.columns]
    if missing:
        raise ConfigError(f"unknown column(s) {missing}; available: {sorted(frame.columns)}")
    df = frame[np.isfinite(frame[value].to_numpy(dtype=np.float64))]
    keys = sort_by_degree(df[list(by)].drop_duplicates(), list(by))
    if df.empty:
        return keys.assign(n=0, n_clusters=0, mean=np.nan), np.empty((n_boot, 0))
    g_code = df[list(by)].merge(keys.reset_index(names="_g"), on=list(by), how="left")["_g"].to_numpy()
    c_code, _ = pd.factorize(df[cluster], sort=True)
    n_c, n_g = int(c_code.max()) + 1, len(keys)
    flat = c_code * n_g + g_code
    x = df[value].to_numpy(dtype=np.float64)
    sums = np.bincount(flat, weights=x, minlength=n_c * n_g).reshape(n_c, n_g)
    counts = np.bincount(flat, minlength=n_c * n_g).reshape(n_c, n_g).astype(np.float64)
    draws = cluster_draws(n_c, n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (draws @ sums) / (draws @ counts)
    out = keys.assign(n=counts.sum(0).astype(int), n_clusters=(counts > 0).sum(0).astype(int),
                      mean=sums.sum(0) / counts.sum(0))
    return out, boot


def clustered_summary(frame: pd.DataFrame, value: str, by: Sequence[str], cluster: str = "sample_pk",
                      n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """:func:`cluster_bootstrap` with a percentile CI: ``by, n, n_clusters, mean, ci_low, ci_high``."""
    groups, boot = cluster_bootstrap(frame, value, by, cluster, n_boot, seed)
    lo, hi = _percentile_ci(boot, confidence) if boot.shape[1] else (np.array([]), np.array([]))
    return groups.assign(ci_low=lo, ci_high=hi)


def contrast_ci(point: float, boot: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(estimate, ci_low, ci_high)`` of a statistic from its value on the data and its ``(n_boot,)``
    clustered-bootstrap replicates (percentile interval)."""
    lo, hi = _percentile_ci(np.asarray(boot, dtype=np.float64)[:, None], confidence)
    return float(point), float(lo[0]), float(hi[0])


def spearman_rows(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Spearman's rho between each row of ``values`` (``(k,)`` or ``(n_boot, k)``) and ``order``
    (``(k,)``), average ranks for ties; NaN where a row has a NaN or is constant."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    rv = stats.rankdata(v, axis=1)
    ro = stats.rankdata(np.asarray(order, dtype=np.float64))
    rv = rv - rv.mean(axis=1, keepdims=True)
    ro = ro - ro.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rv @ ro) / np.sqrt((rv**2).sum(axis=1) * (ro**2).sum())
    rho[~np.isfinite(v).all(axis=1)] = np.nan
    return rho


def ci_text(mean: float, low: float, high: float, signed: bool = False) -> str:
    """``"0.412 [0.380, 0.441]"`` (``signed``: ``"+0.012 [-0.004, +0.030]"``), the tables' cell text."""
    f = "+.3f" if signed else ".3f"
    return f"{mean:{f}} [{low:{f}}, {high:{f}}]"


def ci_table(summary: pd.DataFrame, index: str | list[str] = "method",
             columns: Sequence[str] = ("pretrain", "degree")) -> pd.DataFrame:
    """Wide ``index`` × ``"pretrain / degree"`` table of :func:`ci_text` cells from :func:`summarise`."""
    texts = [ci_text(m, lo, hi) for m, lo, hi in zip(summary["mean"], summary["ci_low"], summary["ci_high"], strict=True)]
    wide = summary.assign(cell=texts).pivot_table(index=index, columns=list(columns), values="cell", aggfunc="first")
    wide = order_columns(wide)
    wide.columns = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in wide.columns]
    return wide


def summarise(
    frame: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    spread: bool = False,
) -> pd.DataFrame:
    """Long table: one row per (group, metric) with ``n, mean, median, ci_low, ci_high``; with
    ``spread`` also the inter-sample spread ``sd`` (sample SD, ddof 1; NaN for one value),
    ``q25, q75`` (linear-interpolation quartiles, numpy's default) and ``iqr = q75 − q25``."""
    missing = [c for c in [*by, *metrics] if c not in frame.columns]
    if missing:
        raise ConfigError(f"unknown column(s) {missing}; available: {sorted(frame.columns)}")
    rows: list[dict[str, Any]] = []
    extra = ["sd", "q25", "q75", "iqr"] if spread else []
    if frame.empty:
        return pd.DataFrame(columns=[*by, "metric", "n", "mean", "median", "ci_low", "ci_high", *extra])
    for key, group in frame.groupby(list(by), sort=True, dropna=False):  # loop over groups, not samples
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            vals = group[metric].to_numpy(dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            lo, hi = bootstrap_ci(vals, n_boot=n_boot, confidence=confidence, seed=seed)
            rows.append(
                {
                    **dict(zip(by, key)),
                    "metric": metric,
                    "n": int(vals.size),
                    "mean": float(vals.mean()) if vals.size else float("nan"),
                    "median": float(np.median(vals)) if vals.size else float("nan"),
                    "ci_low": lo,
                    "ci_high": hi,
                    **(_spread(vals) if spread else {}),
                }
            )
    return sort_by_degree(pd.DataFrame(rows), list(by))


def _spread(vals: np.ndarray) -> dict[str, float]:
    """``sd`` (ddof 1), ``q25``, ``q75`` and ``iqr`` of finite ``vals`` (NaN where undefined)."""
    if vals.size == 0:
        return {"sd": float("nan"), "q25": float("nan"), "q75": float("nan"), "iqr": float("nan")}
    q25, q75 = np.quantile(vals, [0.25, 0.75])
    return {"sd": float(vals.std(ddof=1)) if vals.size > 1 else float("nan"), "q25": float(q25), "q75": float(q75),
            "iqr": float(q75 - q25)}


NEAR_CHANCE_MARGIN = 0.10  # above chance a model must be to count as working (findings name it with its reason)


def near_chance(accuracy: Any, num_classes: Any, margin: float = NEAR_CHANCE_MARGIN) -> np.ndarray:
    """True where a test accuracy is below chance + ``margin`` (chance = 1/K for K classes, K ≥ 2;
    a missing accuracy counts as near chance): 0.60 for 2 classes, 0.30 for 5."""
    acc = np.asarray(accuracy, dtype=np.float64)
    k = np.clip(np.asarray(num_classes, dtype=np.float64), 2, None)
    with np.errstate(invalid="ignore"):
        return ~(acc >= 1.0 / k + margin - 1e-9)  # 1/5 + 0.1 is 0.30000000000000004 in floats


def stability_scores(means: np.ndarray, metric: str) -> np.ndarray:
    """Lower = more stable: ``-mean·sign`` for a metric with a direction, ``|mean|`` for change metrics
    (the order :func:`stability_ranking` ranks by)."""
    direction = get_drift_metric(metric).sign
    return -means * direction if direction else np.abs(means)


def kendall_tau_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between each row of ``a`` and of ``b`` (``(n_boot, k)`` each):
    ``Σ_{i<j} sgn(a_i−a_j)·sgn(b_i−b_j) / sqrt(n_a · n_b)`` with ``n_a``, ``n_b`` the pairs not tied
    in ``a``, ``b`` (scipy's tau-b); NaN where one row is all ties or has a NaN."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    iu = np.triu_indices(a.shape[1], k=1)
    da = np.sign(a[:, :, None] - a[:, None, :])[:, iu[0], iu[1]]
    db = np.sign(b[:, :, None] - b[:, None, :])[:, iu[0], iu[1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (da * db).sum(1) / np.sqrt((da**2).sum(1) * (db**2).sum(1))
    tau[~(np.isfinite(a).all(1) & np.isfinite(b).all(1))] = np.nan
    return tau


def stratified_boot(frame: pd.DataFrame, value: str, by: Sequence[str], stratum: str = "arch",
                    cluster: str = "sample_pk", n_boot: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`cluster_bootstrap` run separately per ``stratum`` (images resampled *within* each
    architecture, seed ``seed + i`` for the i-th stratum): ``groups`` (``stratum`` and ``by``
    columns, ``n``, ``n_clusters``, ``mean``) and ``(n_boot, n_groups)`` replicate means."""
    parts, boots = [], []
    for i, (key, rows) in enumerate(frame.groupby(stratum, sort=True)):
        groups, boot = cluster_bootstrap(rows, value, list(by), cluster, n_boot, seed + i)
        parts.append(groups.assign(**{stratum: key}))
        boots.append(boot)
    if not parts:
        return pd.DataFrame(columns=[stratum, *by, "n", "n_clusters", "mean"]), np.empty((n_boot, 0))
    groups = pd.concat(parts, ignore_index=True)
    return groups[[stratum, *by, "n", "n_clusters", "mean"]], np.concatenate(boots, axis=1)


def ranking_uncertainty(frame: pd.DataFrame, metric: str = "iou_top20", item: str = "arch", by: str = "method",
                        cluster: str = "sample_pk", n_boot: int = 2000, confidence: float = 0.95,
                        seed: int = 0) -> pd.DataFrame:
    """:func:`ranking_agreement` of every two methods plus the uncertainty of Kendall's tau.

    Bootstrap: per ``item`` (architecture), its images are resampled with replacement
    (:func:`stratified_boot`; each drawn image keeps its rows of every method, so both methods'
    means of a replicate use the same images), the per-(method, architecture) means recomputed,
    the architectures ranked per method and tau-b taken between the two methods' rankings
    (:func:`kendall_tau_rows`). Adds ``tau_ci_low, tau_ci_high`` (percentile interval) and
    ``reversal_share`` — the share of replicates whose rankings reverse by :func:`ranking_agreement`'s
    rule (tau < 0, or the most stable architecture under one method is the least stable under the
    other) — and ``n_boot`` (replicates where both rankings are defined)."""
    point = ranking_agreement(stability_ranking(frame, metric, item, by), item, by)
    cols = [*point.columns, "tau_ci_low", "tau_ci_high", "reversal_share", "n_boot"]
    if point.empty:
        return pd.DataFrame(columns=cols)
    groups, boot = stratified_boot(frame, metric, [by], item, cluster, n_boot, seed)
    items = sorted(groups[item].unique())
    rows = []
    for r in point.itertuples(index=False):
        sides = []
        for method in (r.method_a, r.method_b):
            idx = [groups.index[(groups[by] == method) & (groups[item] == it)] for it in items]
            sides.append(np.column_stack([boot[:, i[0]] if len(i) else np.full(n_boot, np.nan) for i in idx]))
        a, b = (stability_scores(x, metric) for x in sides)
        shared = np.isfinite(a).any(0) & np.isfinite(b).any(0)  # items ranked under both (as the point estimate)
        a, b = a[:, shared], b[:, shared]
        keep = np.isfinite(a).all(1) & np.isfinite(b).all(1)
        tau = np.nan_to_num(kendall_tau_rows(a, b), nan=0.0)[keep]  # all ties: tau 0, as ranking_agreement
        flip = ((a.argmin(1) == b.argmax(1)) | (b.argmin(1) == a.argmax(1)))[keep]
        lo, hi = _percentile_ci(tau[:, None], confidence) if tau.size else (np.array([np.nan]), np.array([np.nan]))
        rows.append({**r._asdict(), "tau_ci_low": float(lo[0]), "tau_ci_high": float(hi[0]),
                     "reversal_share": float(((tau < 0) | flip).mean()) if tau.size else float("nan"),
                     "n_boot": int(keep.sum())})
    return pd.DataFrame(rows, columns=cols)


def architecture_effect(frame: pd.DataFrame, values: Sequence[str], item: str = "arch", cluster: str = "sample_pk",
                        n_boot: int = 2000, seed: int = 0) -> tuple[dict[str, float], np.ndarray]:
    """η² of ``item`` for each column of ``values`` on the same rows: ``SS_between / SS_total``
    (the share of the variance over rows explained by the item's means; 0 when every item has
    the same mean, 1 when rows vary only between items; 0 for a constant column).

    Replicates resample images within each item (stratified clustered bootstrap, seed ``seed + i``
    per item, all of a drawn image's rows), from per-(item, image) sums of ``x``, ``x²`` and counts:
    ``SS_total = Σx² − (Σx)²/N``, ``SS_between = Σ_g S_g²/N_g − (Σx)²/N``. Rows with a non-finite
    value in any column are dropped first, so every column is measured on the same rows — and,
    with the same number of rows and items, the same upward bias under no effect, which cancels in
    a difference of two η². Returns ``({column: η²}, (n_boot, len(values)))``."""
    df = frame[np.isfinite(frame[list(values)].to_numpy(dtype=np.float64)).all(1)]
    items = sorted(df[item].unique())
    sums = np.zeros((n_boot, len(items), len(values)))
    squares = np.zeros_like(sums)
    counts = np.zeros((n_boot, len(items), 1))
    point_s = np.zeros((len(items), len(values)))
    point_q = np.zeros_like(point_s)
    point_n = np.zeros((len(items), 1))
    for i, it in enumerate(items):
        rows = df[df[item] == it]
        code, _ = pd.factorize(rows[cluster], sort=True)
        x = rows[list(values)].to_numpy(dtype=np.float64)
        n_c = int(code.max()) + 1
        s = np.stack([np.bincount(code, weights=x[:, j], minlength=n_c) for j in range(len(values))], 1)
        q = np.stack([np.bincount(code, weights=x[:, j] ** 2, minlength=n_c) for j in range(len(values))], 1)
        n = np.bincount(code, minlength=n_c).astype(np.float64)[:, None]
        w = cluster_draws(n_c, n_boot, seed + i)
        sums[:, i], squares[:, i], counts[:, i] = w @ s, w @ q, w @ n
        point_s[i], point_q[i], point_n[i] = s.sum(0), q.sum(0), n.sum(0)

    def eta(s: np.ndarray, q: np.ndarray, n: np.ndarray) -> np.ndarray:
        total_n = n.sum(-2)
        grand = s.sum(-2) ** 2 / total_n
        with np.errstate(invalid="ignore", divide="ignore"):
            ss_total = q.sum(-2) - grand
            ss_between = (s**2 / n).sum(-2) - grand
            out = np.where(ss_total > 1e-12 * np.maximum(q.sum(-2), 1e-300), ss_between / ss_total, 0.0)
        return np.clip(out, 0.0, 1.0)

    if not items:
        return {v: float("nan") for v in values}, np.full((n_boot, len(values)), np.nan)
    point = eta(point_s, point_q, point_n)
    return dict(zip(values, map(float, point), strict=True)), eta(sums, squares, counts)


def stability_ranking(
    frame: pd.DataFrame, metric: str = "iou_top20", item: str = "arch", by: str = "method"
) -> pd.DataFrame:
    """Per ``by`` (method), rank the ``item``s (architectures) by mean ``metric``; rank 1 = most
    stable (the drift metric's registered direction: highest, lowest, or for change metrics the
    smallest |mean|).

    Returns columns ``by, item, mean, rank`` (average ranks for ties).
    """
    if frame.empty:
        return pd.DataFrame(columns=[by, item, "mean", "rank"])
    means = frame.groupby([by, item], sort=True)[metric].mean().reset_index(name="mean")
    score = pd.Series(stability_scores(means["mean"].to_numpy(dtype=np.float64), metric), index=means.index)
    means["rank"] = score.groupby(means[by]).rank(method="average", ascending=True)
    return means


def ranking_agreement(ranking: pd.DataFrame, item: str = "arch", by: str = "method") -> pd.DataFrame:
    """Kendall's tau-b between every two methods' architecture rankings, with reversal flags.

    ``reversal`` is True when tau < 0 or the most stable item under one method is the least
    stable under the other; ``reversed_pairs`` lists item pairs ordered oppositely.
    """
    cols = ["method_a", "method_b", "n_items", "kendall_tau", "p_value", "n_discordant", "reversed_pairs", "reversal"]
    if ranking.empty:
        return pd.DataFrame(columns=cols)
    wide = ranking.pivot(index=item, columns=by, values="rank")
    rows = []
    for ma, mb in combinations(list(wide.columns), 2):
        pair = wide[[ma, mb]].dropna()
        if len(pair) < 2:
            continue
        ra, rb = pair[ma].to_numpy(), pair[mb].to_numpy()
        tau, p = stats.kendalltau(ra, rb)
        da = np.sign(ra[:, None] - ra[None, :])
        db = np.sign(rb[:, None] - rb[None, :])
        disc = np.triu((da * db) < 0, k=1)
        names = pair.index.to_numpy()
        ii, jj = np.nonzero(disc)
        reversed_pairs = [f"{names[i]}/{names[j]}" for i, j in zip(ii, jj)]
        best_a, worst_a = pair[ma].idxmin(), pair[ma].idxmax()
        best_b, worst_b = pair[mb].idxmin(), pair[mb].idxmax()
        flip = (best_a == worst_b) or (best_b == worst_a)
        tau_f = float(tau) if np.isfinite(tau) else 0.0
        rows.append(
            {
                "method_a": ma,
                "method_b": mb,
                "n_items": int(len(pair)),
                "kendall_tau": tau_f,
                "p_value": float(p) if np.isfinite(p) else float("nan"),
                "n_discordant": int(disc.sum()),
                "reversed_pairs": ", ".join(reversed_pairs),
                "reversal": bool(tau_f < 0 or flip),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def accuracy_controlled_effect(
    frame: pd.DataFrame,
    performance: str = "precision",
    accuracy: str = "accuracy",
    source: str = "pretrain",
    reference: str | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """OLS ``performance = b0 + b1·accuracy + Σ_s c_s·[source = s] + ε`` over checkpoints.

    ``c_s`` is the difference in explanation performance between source ``s`` and ``reference``
    (default: alphabetically first source) at matched accuracy, with CI
    ``c_s ± t_{df, 1−α/2}·SE`` (classical OLS standard errors, ``df = n − p``).
    Returns ``{"effects": DataFrame(source, reference, effect, se, ci_low, ci_high, p_value),
    "slope", "intercepts": {source: intercept}, "r2", "n", "df"}``.
    """
    df = frame[[performance, accuracy, source]].dropna()
    sources = sorted(df[source].astype(str).unique())
    if len(sources) < 1 or len(df) < 2:
        raise InvalidValueError(
            f"need at least 2 checkpoints with {performance} and {accuracy} to fit the accuracy-controlled model; "
            "evaluate more checkpoints first"
        )
    ref = reference if reference is not None else sources[0]
    if ref not in sources:
        raise ConfigError(f"reference source {ref!r} not among {sources}")
    others = [s for s in sources if s != ref]
    src = df[source].astype(str).to_numpy()
    x = np.column_stack([np.ones(len(df)), df[accuracy].to_numpy(float), *[(src == s).astype(float) for s in others]])
    y = df[performance].to_numpy(float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    n, p = x.shape
    dof = n - np.linalg.matrix_rank(x)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(resid @ resid) / ss_tot if ss_tot > 0 else float("nan")
    if dof > 0:
        sigma2 = float(resid @ resid) / dof
        cov = sigma2 * np.linalg.pinv(x.T @ x)
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
        tcrit = float(stats.t.ppf(0.5 + confidence / 2, dof))
    else:
        se = np.full(p, np.nan)
        tcrit = float("nan")
    rows = []
    for j, s in enumerate(others, start=2):
        t_stat = coef[j] / se[j] if se[j] > 0 else np.nan
        rows.append(
            {
                "source": s,
                "reference": ref,
                "effect": float(coef[j]),
                "se": float(se[j]),
                "ci_low": float(coef[j] - tcrit * se[j]),
                "ci_high": float(coef[j] + tcrit * se[j]),
                "p_value": float(2 * stats.t.sf(abs(t_stat), dof)) if np.isfinite(t_stat) else float("nan"),
            }
        )
    intercepts = {ref: float(coef[0])} | {s: float(coef[0] + coef[j]) for j, s in enumerate(others, start=2)}
    return {
        "effects": pd.DataFrame(rows, columns=["source", "reference", "effect", "se", "ci_low", "ci_high", "p_value"]),
        "slope": float(coef[1]),
        "slope_se": float(se[1]),
        "intercepts": intercepts,
        "r2": r2,
        "n": int(n),
        "df": int(dof),
    }
