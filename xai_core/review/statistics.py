"""Statistics of a radiologist reading study: what the Results page, ``xaudit review export|agreement``
and the HTML report show. Pure functions over a ratings frame; no database, no Streamlit.

Input: ``ratings``, one row per submitted rating, with columns ``reviewer, case_key, sample_pk,
checkpoint_id`` (may be ``<NA>`` for catch trials), ``method`` (``baseline_random`` / ``baseline_sobel`` for
catch trials), ``is_catch, arch, pretrain, degree, evidence_match`` (1–5), ``plausible`` (bool) and
``point_x, point_y`` (image pixel coordinates of the reviewer's click, NaN when none).

* :func:`mean_ratings`: mean evidence-match rating and share rated plausible per group, with
  case-clustered bootstrap CIs (the images, ``sample_pk``, are resampled; a case's ratings are
  correlated across readers).
* :func:`mrmc_comparison`: the multi-reader multi-case comparison of methods (or any factor): a
  linear mixed model with crossed random effects for readers and cases (Dorfman, Berbaum & Metz
  1992; Obuchowski & Rockette 1995; fitted by REML through ``statsmodels.MixedLM``).
* :func:`agreement`: Krippendorff's alpha (ordinal for the 1–5 rating, nominal for plausible;
  ``krippendorff``) and Fleiss' kappa (``statsmodels``) with bootstrap CIs over cases.
* :func:`catch_failures`: per reviewer, how often a catch trial (a random or edge map) was rated
  as matching the lesion, with a Wilson CI; readers who do so often are flagged.
* :func:`case_means` / :func:`metric_correlation`: Spearman's rho between the mean human rating of
  a heatmap and its computed metrics (precision, drift …), with a clustered bootstrap CI.
* :func:`click_distances`: where the reviewer clicked, relative to the lesion and the map's peak.

A statistic that cannot be computed honestly (too few readers, cases or levels; a singular or
non-converged fit) is reported with NaN values and a ``"not testable: …"`` note/status; these
functions never substitute a weaker test.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from scipy import ndimage, sparse, stats
from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint
from threadpoolctl import threadpool_limits

from xai_core.errors import ConfigError, InvalidValueError, ShapeError
from xai_core.metrics.order import ordered_degrees, sort_by_degree
from xai_core.metrics.statistics import cluster_draws, contrast_ci

RATING_LEVELS = (1, 2, 3, 4, 5)
CASE_KEY = ["checkpoint_id", "method", "sample_pk"]
MEAN_COLS = ["n_ratings", "n_readers", "n_cases", "evidence_match", "evidence_ci_low", "evidence_ci_high",
             "plausible", "plausible_ci_low", "plausible_ci_high"]
MRMC_COLS = ["factor", "level", "reference", "estimate", "se", "df", "ci_low", "ci_high", "p_value",
             "n_ratings", "n_readers", "n_cases", "status", "note"]
AGREEMENT_COLS = ["measure", "outcome", "value", "ci_low", "ci_high", "n_cases", "n_readers", "note"]
CATCH_COLS = ["reviewer", "n_catch", "n_failed", "rate", "ci_low", "ci_high", "flagged"]
CORRELATION_COLS = ["metric", "rho", "ci_low", "ci_high", "n_cases", "n_images", "note"]
_ZERO_VARIANCE = 1e-4  # a variance component below this share of the total counts as estimated at 0
_DENSE_LIMIT = 1500  # ratings; larger designs are sparse (faster there)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str = "ratings") -> None:
    """Raise :class:`ConfigError` naming the columns ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"{what} lack column(s) {missing}; available: {sorted(map(str, frame.columns))}")


def _without_catch(ratings: pd.DataFrame, keep: bool = False) -> pd.DataFrame:
    """``ratings`` without catch trials (all of them when ``keep``)."""
    return ratings if keep else ratings[~ratings["is_catch"].astype(bool).to_numpy()]


def _resample_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` indices of ``n`` units drawn with replacement (the draws of ``bootstrap_ci``)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


# ----------------------------------------------------------------------------------------- means


def _case_clustered_means(values: np.ndarray, cases: pd.Series, n_boot: int, seed: int,
                          confidence: float) -> list[tuple[float, float, float]]:
    """``(mean, ci_low, ci_high)`` of each column of ``values`` (rows = ratings) with the images in
    ``cases`` resampled: ``mean* = (W @ S) / (W @ N)``, ``W`` the draw counts of
    :func:`~xai_core.metrics.statistics.cluster_draws`, ``S``/``N`` per-image sums/counts."""
    codes, uniques = pd.factorize(cases, sort=True)
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.float64)
    sums = np.stack([np.bincount(codes, weights=v, minlength=len(uniques)) for v in values.T], axis=1)
    draws = cluster_draws(len(uniques), n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (draws @ sums) / (draws @ counts)[:, None]
    point = sums.sum(axis=0) / counts.sum()
    return [contrast_ci(point[j], boot[:, j], confidence) for j in range(values.shape[1])]


def mean_ratings(ratings: pd.DataFrame, by: Sequence[str], n_boot: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Per group ``by``: mean ``evidence_match`` and share ``plausible`` with percentile bootstrap CIs.

    The bootstrap resamples the group's images (``sample_pk``) with replacement and keeps every
    rating of each drawn image — all readers, checkpoints and methods in the group — because the
    ratings of one image are correlated. Catch trials are left out unless ``by`` holds
    ``is_catch``. Columns: ``by``, ``n_ratings, n_readers, n_cases`` (images), ``evidence_match,
    evidence_ci_low, evidence_ci_high, plausible, plausible_ci_low, plausible_ci_high``; groups in
    sorted order (degrees in the study's order).
    """
    by = list(by)
    _require(ratings, [*by, "reviewer", "sample_pk", "is_catch", "evidence_match", "plausible"])
    df = _without_catch(ratings, keep="is_catch" in by)
    if df.empty:
        return pd.DataFrame(columns=[*by, *MEAN_COLS])
    groups = df.groupby(by, sort=False, dropna=False) if by else [((), df)]
    rows = []
    for key, g in groups:  # loop over groups; each group's bootstrap is one matrix product
        key = key if isinstance(key, tuple) else (key,)
        values = np.column_stack([g["evidence_match"].to_numpy(np.float64), g["plausible"].to_numpy(np.float64)])
        (em, em_lo, em_hi), (pl, pl_lo, pl_hi) = _case_clustered_means(values, g["sample_pk"], n_boot, seed,
                                                                       confidence)
        rows.append({**dict(zip(by, key, strict=True)), "n_ratings": len(g), "n_readers": g["reviewer"].nunique(),
                     "n_cases": g["sample_pk"].nunique(), "evidence_match": em, "evidence_ci_low": em_lo,
                     "evidence_ci_high": em_hi, "plausible": pl, "plausible_ci_low": pl_lo,
                     "plausible_ci_high": pl_hi})
    return sort_by_degree(pd.DataFrame(rows, columns=[*by, *MEAN_COLS]), by)


# ------------------------------------------------------------------------------------------ MRMC


def _levels(values: pd.Series, factor: str) -> list[str]:
    """Distinct non-missing values of ``values`` as strings, sorted (degrees in the study's order,
    numbers numerically)."""
    distinct = values.dropna().unique()
    if factor == "degree":
        return ordered_degrees(distinct)
    return [str(v) for v in sorted(distinct)]


def _not_testable(factor: str, reason: str, df: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """One-row :func:`mrmc_comparison` result that says why no test was done."""
    row = {c: np.nan for c in MRMC_COLS} | {
        "factor": factor, "level": None, "reference": reference, "n_ratings": len(df),
        "n_readers": df["reviewer"].nunique(), "n_cases": df["sample_pk"].nunique(),
        "status": f"not testable: {reason}", "note": ""}
    out = pd.DataFrame([row], columns=MRMC_COLS)
    out.attrs["variance"] = {}
    return out


def _indicator(codes: np.ndarray, dense: bool) -> Any:
    """``(n, k)`` 0/1 design matrix of the integer ``codes`` (k = their count), sparse unless ``dense``."""
    codes, uniques = pd.factorize(codes)
    mat = sparse.csr_array((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), len(uniques)))
    return mat.toarray() if dense else mat


def _fit_crossed(y: np.ndarray, x: np.ndarray, components: dict[str, np.ndarray]) -> tuple[Any, list[str]]:
    """REML fit of ``y = x·b + Σ_k Z_k·u_k + e`` with one group and independent ``u_k ~ N(0, s_k² I)``
    (one variance component per entry of ``components``: the integer codes behind ``Z_k``).

    Returns ``(result, warning messages)``. Designs of more than :data:`_DENSE_LIMIT` ratings are
    sparse: slower on small designs, faster on large ones."""
    dense = len(y) <= _DENSE_LIMIT
    mats = [_indicator(codes, dense) for codes in components.values()]
    spec = VCSpec(list(components), [[[f"{name}{i}" for i in range(m.shape[1])]] for name, m in zip(components, mats)],
                  [[m] for m in mats])
    # one BLAS thread: on a busy 2-core machine threaded BLAS made this fit 10-30x slower (measured)
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1):
        warnings.simplefilter("always")
        result = MixedLM(y, x, groups=np.zeros(len(y)), exog_vc=spec).fit(reml=True)
    return result, [str(w.message) for w in caught]


def _degenerate(result: Any, messages: list[str], names: list[str], total: float) -> tuple[str | None, list[str]]:
    """``(why the fit is singular or None, the variance components estimated as 0)``.

    Singular: the Hessian at the estimate is not positive definite, the fixed-effect standard
    errors are not finite, or every component of the readers (reader and reader × level) or of
    the cases is 0 — the model then ignores who read what (or which image), the pooled test in
    disguise. A single zero component (say the readers' main effect) leaves a valid model."""
    zero = [n for n, v in zip(names, result.vcomp) if v < _ZERO_VARIANCE * total]
    for side in ("reader", "case"):
        if {n for n in names if n.startswith(side)} <= set(zero):
            return f"singular fit (every {side} variance estimated as 0: {', '.join(zero)})", zero
    if any("not positive definite" in m for m in messages):
        return "singular fit (the Hessian at the estimate is not positive definite)", zero
    if not np.all(np.isfinite(result.bse_fe)) or np.any(result.bse_fe <= 0):
        return "singular fit (fixed-effect standard errors are not finite)", zero
    return None, zero


def mrmc_comparison(ratings: pd.DataFrame, factor: str = "method", outcome: str = "evidence_match",
                    reference: str | None = None, include_catch: bool = False, min_cases: int = 5,
                    confidence: float = 0.95) -> pd.DataFrame:
    """Multi-reader multi-case comparison of the levels of ``factor`` on ``outcome``.

    Model (REML, one group, crossed variance components; the Dorfman–Berbaum–Metz model on ratings)::

        y[r,c,t] = b0 + b_t + R_r + C_c + RT_rt + CT_ct + e,   all random terms independent normal

    with ``r`` the reader, ``c`` the case (``sample_pk``: the same image appears under several
    levels) and ``t`` the level (treatment coding against ``reference``, by default the first
    level in sorted order). ``RT`` and ``CT`` (reader × level, case × level) are what make a
    difference between levels generalise to other readers and images; ignoring them (a pooled
    test) understates the standard error. The CI and p value of ``b_t`` use Student's t with
    ``df = readers − 1``, the lower bound of the denominator degrees of freedom of this model
    (Hillis 2007): on simulated studies (3 / 6 / 10 readers, 20–24 cases, 100 each) the 95 % CI
    covered the true effect 99 / 95 / 98 % of the time, the normal (Wald) one only 84 / 88 / 93 %.

    One row per non-reference level: ``factor, level, reference, estimate, se, df, ci_low,
    ci_high, p_value, n_ratings, n_readers, n_cases, status`` (``"ok"``) and ``note`` (variance
    components estimated as 0, if any). ``attrs["variance"]`` holds the variance components
    (``reader, case, reader_x_<factor>, case_x_<factor>, residual``) and ``attrs["warnings"]``
    statsmodels' messages. With fewer than 2 readers, 2 levels or ``min_cases`` cases, or a fit
    that is singular (see :func:`_degenerate`) or does not converge, a single row with NaN values
    and ``status = "not testable: …"`` comes back instead; nothing is raised for that. Catch
    trials are left out unless ``include_catch``.
    """
    _require(ratings, [factor, outcome, "reviewer", "sample_pk", "is_catch"])
    df = _without_catch(ratings, keep=include_catch)
    df = df[df[factor].notna().to_numpy() & np.isfinite(df[outcome].to_numpy(np.float64))]
    levels = _levels(df[factor], factor)
    if reference is not None and str(reference) not in levels:
        raise ConfigError(f"reference {reference!r} is not a level of {factor}; levels: {levels}")
    ref = str(reference) if reference is not None else (levels[0] if levels else None)
    if df["reviewer"].nunique() < 2:
        return _not_testable(factor, f"{df['reviewer'].nunique()} reader(s); the comparison needs at least 2", df, ref)
    if len(levels) < 2:
        return _not_testable(factor, f"{len(levels)} level(s) of {factor}; a comparison needs at least 2", df, ref)
    if df["sample_pk"].nunique() < min_cases:
        return _not_testable(factor, f"{df['sample_pk'].nunique()} case(s); the comparison needs at least {min_cases}",
                             df, ref)
    level = df[factor].map(str).to_numpy()
    others = [lv for lv in levels if lv != ref]
    x = np.column_stack([np.ones(len(df)), *[(level == lv).astype(np.float64) for lv in others]])
    reader = pd.factorize(df["reviewer"])[0]
    case = pd.factorize(df["sample_pk"])[0]
    t = pd.factorize(level)[0]
    nt = int(t.max()) + 1
    components = {"reader": reader, "case": case,
                  f"reader_x_{factor}": reader * nt + t, f"case_x_{factor}": case * nt + t}
    y = df[outcome].to_numpy(np.float64)
    try:
        result, messages = _fit_crossed(y, x, components)
    except (np.linalg.LinAlgError, ValueError) as exc:
        return _not_testable(factor, f"the mixed model could not be fitted ({exc})", df, ref)
    if not result.converged:
        return _not_testable(factor, "the mixed model did not converge", df, ref)
    total = float(np.sum(result.vcomp) + result.scale)
    singular, zero = _degenerate(result, messages, list(components), total)
    if singular:
        return _not_testable(factor, singular, df, ref)
    est, se = np.asarray(result.fe_params)[1:], np.asarray(result.bse_fe)[1:]
    dof = df["reviewer"].nunique() - 1
    q = stats.t.ppf(0.5 + confidence / 2, dof)
    out = pd.DataFrame({"factor": factor, "level": others, "reference": ref, "estimate": est, "se": se, "df": dof,
                        "ci_low": est - q * se, "ci_high": est + q * se,
                        "p_value": 2 * stats.t.sf(np.abs(est / se), dof),
                        "n_ratings": len(df), "n_readers": df["reviewer"].nunique(),
                        "n_cases": df["sample_pk"].nunique(), "status": "ok",
                        "note": f"{', '.join(zero)} variance estimated as 0" if zero else ""}, columns=MRMC_COLS)
    out.attrs["variance"] = {n: float(v) for n, v in zip(components, result.vcomp)} | {"residual": float(result.scale)}
    out.attrs["warnings"] = messages
    return out


# ------------------------------------------------------------------------------------- agreement


def _value_counts(frame: pd.DataFrame, column: str, domain: Sequence[Any]) -> np.ndarray:
    """``(n_cases, len(domain))`` counts of each value of ``column`` per ``case_key``."""
    codes = pd.Categorical(frame[column], categories=list(domain))
    if np.any(codes.codes < 0):
        bad = sorted(set(frame[column][codes.codes < 0].map(str)))
        raise InvalidValueError(f"{column} holds {bad}; allowed values are {list(domain)}")
    table = pd.crosstab(frame["case_key"], codes, dropna=False)
    return table.reindex(columns=list(domain), fill_value=0).to_numpy(np.float64)


def _boot_ci(statistic: Any, table: np.ndarray, point: float, n_boot: int, seed: int,
             confidence: float) -> tuple[float, float]:
    """Percentile CI of ``statistic(table)`` with the rows (cases) of ``table`` resampled."""
    idx = _resample_index(len(table), n_boot, seed)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = np.array([statistic(table[i]) for i in idx])  # one library call per resample
    _, lo, hi = contrast_ci(point, boot, confidence)
    return lo, hi


def _alpha_row(frame: pd.DataFrame, column: str, domain: Sequence[Any], level: str, n_boot: int, seed: int,
               confidence: float) -> dict[str, Any]:
    """Krippendorff's alpha of ``column`` over the cases read at least twice, with a bootstrap CI."""
    counts = _value_counts(frame, column, domain)
    counts = counts[counts.sum(axis=1) >= 2]
    row = {"measure": f"krippendorff_alpha_{level}", "outcome": column, "n_cases": len(counts),
           "n_readers": frame.loc[frame.groupby("case_key")["reviewer"].transform("size") >= 2, "reviewer"].nunique()}
    if len(counts) == 0:
        return row | {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                      "note": "not testable: no case was read by 2 or more readers"}
    if np.count_nonzero(counts.sum(axis=0)) < 2:
        return row | {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                      "note": "not testable: every rating has the same value, so agreement beyond chance is undefined"}

    def alpha(table: np.ndarray) -> float:
        return float(krippendorff.alpha(value_counts=table, value_domain=list(domain), level_of_measurement=level))

    value = alpha(counts)
    lo, hi = _boot_ci(alpha, counts, value, n_boot, seed, confidence)
    return row | {"value": value, "ci_low": lo, "ci_high": hi, "note": ""}


def _fleiss_row(frame: pd.DataFrame, n_boot: int, seed: int, confidence: float) -> dict[str, Any]:
    """Fleiss' kappa of ``evidence_match`` on the cases with at least ``k`` ratings (their first
    ``k`` by reviewer name), ``k`` the most common number of ratings per case read ≥ 2 times
    (the smallest such count on a tie, which keeps the most cases)."""
    row: dict[str, Any] = {"measure": "fleiss_kappa", "outcome": "evidence_match"}
    per_case = frame.groupby("case_key").size()
    read = per_case[per_case >= 2]
    if read.empty:
        return row | {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_cases": 0, "n_readers": 0,
                      "note": "not testable: no case was read by 2 or more readers"}
    freq = read.value_counts()
    k = int(min(freq.index[freq == freq.max()]))
    cases = per_case.index[per_case >= k]
    used = frame[frame["case_key"].isin(cases)].sort_values(["case_key", "reviewer"]).groupby("case_key").head(k)
    data = used["evidence_match"].to_numpy(np.int64).reshape(len(cases), k) - RATING_LEVELS[0]
    table, _ = aggregate_raters(data, n_cat=len(RATING_LEVELS))
    note = (f"k = {k} ratings per case (the first {k} by reviewer name); "
            f"{len(cases)} of {len(read)} cases read ≥ 2 times")
    row |= {"n_cases": len(cases), "n_readers": used["reviewer"].nunique()}
    if np.count_nonzero(table.sum(axis=0)) < 2:
        return row | {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                      "note": f"not testable: every rating has the same value; {note}"}
    value = float(fleiss_kappa(table, method="fleiss"))
    lo, hi = _boot_ci(lambda t: float(fleiss_kappa(t, method="fleiss")), table, value, n_boot, seed, confidence)
    return row | {"value": value, "ci_low": lo, "ci_high": hi, "note": note}


def agreement(ratings: pd.DataFrame, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
              include_catch: bool = False) -> pd.DataFrame:
    """Inter-rater agreement over the cases (``case_key``) read by at least 2 readers.

    Rows: Krippendorff's alpha, ordinal, of ``evidence_match`` (domain 1–5) and nominal of
    ``plausible`` (``krippendorff.alpha`` on per-case value counts: the reader × case matrix with
    NaN where a reader did not read a case, counted); Fleiss' kappa of ``evidence_match``
    (``statsmodels``) on the cases with at least ``k`` ratings, using each case's first ``k``
    ratings by reviewer name (``k`` and the cases used are in ``note``). CIs: percentile bootstrap
    over cases. Columns: ``measure, outcome, value, ci_low, ci_high, n_cases, n_readers, note``;
    ``note`` starts with ``"not testable:"`` (and ``value`` is NaN) where no case has 2 readers or
    every rating is the same. Catch trials are left out unless ``include_catch``. A reviewer rating
    the same case twice raises :class:`InvalidValueError`.
    """
    _require(ratings, ["reviewer", "case_key", "is_catch", "evidence_match", "plausible"])
    df = _without_catch(ratings, keep=include_catch)
    twice = df.duplicated(["reviewer", "case_key"])
    if twice.any():
        first = df[twice].iloc[0]
        raise InvalidValueError(f"reviewer {first['reviewer']!r} rated case {first['case_key']!r} more than once; "
                                "pass one rating per reviewer and case")
    df = df.assign(evidence_match=df["evidence_match"].astype("int64"), plausible=df["plausible"].astype(bool))
    rows = [_alpha_row(df, "evidence_match", RATING_LEVELS, "ordinal", n_boot, seed, confidence),
            _alpha_row(df, "plausible", (False, True), "nominal", n_boot, seed, confidence),
            _fleiss_row(df, n_boot, seed, confidence)]
    return pd.DataFrame(rows, columns=AGREEMENT_COLS)


# ---------------------------------------------------------------------------------- catch trials


def catch_failures(ratings: pd.DataFrame, threshold: int = 4, flag_rate: float = 0.5, min_catch: int = 2,
                   confidence: float = 0.95) -> pd.DataFrame:
    """Per reviewer: how often a catch trial (a random or Sobel edge map) was rated as matching.

    A catch trial *fails* when its ``evidence_match`` is ``>= threshold`` (the reader said the
    chance map matches the lesion); ``plausible`` is not used, as it judges clinical plausibility,
    not the match. ``rate = n_failed / n_catch`` with a Wilson score CI; ``flagged`` when
    ``rate > flag_rate`` on at least ``min_catch`` catch trials. Every reviewer in ``ratings``
    appears; those without catch trials have ``n_catch = 0``, NaN rate and ``flagged = False``.
    Columns: ``reviewer, n_catch, n_failed, rate, ci_low, ci_high, flagged``, by reviewer name.
    """
    _require(ratings, ["reviewer", "is_catch", "evidence_match"])
    catch = ratings["is_catch"].astype(bool).to_numpy()
    failed = catch & (ratings["evidence_match"].to_numpy(np.float64) >= threshold)
    per = (pd.DataFrame({"reviewer": ratings["reviewer"].to_numpy(), "n_catch": catch.astype(int),
                         "n_failed": failed.astype(int)})
           .groupby("reviewer", sort=True)[["n_catch", "n_failed"]].sum().reset_index())
    n, k = per["n_catch"].to_numpy(), per["n_failed"].to_numpy()
    has = n > 0
    rate, lo, hi = (np.full(len(per), np.nan) for _ in range(3))
    rate[has] = k[has] / n[has]
    if has.any():
        lo[has], hi[has] = proportion_confint(k[has], n[has], alpha=1 - confidence, method="wilson")
    return per.assign(rate=rate, ci_low=lo, ci_high=hi,
                      flagged=has & (n >= min_catch) & (np.nan_to_num(rate) > flag_rate))[CATCH_COLS]


# ------------------------------------------------------------------------- ratings versus metrics


def case_means(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per rated heatmap ``(checkpoint_id, method, sample_pk)``: mean ``evidence_match``, share
    ``plausible`` and ``n_ratings``. Catch trials (no checkpoint) are left out."""
    _require(ratings, [*CASE_KEY, "is_catch", "evidence_match", "plausible"])
    df = _without_catch(ratings)
    df = df.assign(plausible=df["plausible"].astype(np.float64), evidence_match=df["evidence_match"].astype(np.float64))
    out = df.groupby(CASE_KEY, sort=True).agg(evidence_match=("evidence_match", "mean"),
                                              plausible=("plausible", "mean"),
                                              n_ratings=("evidence_match", "size")).reset_index()
    return out.astype({"checkpoint_id": "Int64", "sample_pk": "int64"})


def _weighted_ranks(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of ``x`` (``(n,)``) in each resample given as row multiplicities ``weights``
    (``(B, n)``): the rank a row would have in the sample with row ``i`` repeated ``weights[b, i]``
    times — the weight of smaller values plus the mean position among equal ones."""
    uniq, inv = np.unique(x, return_inverse=True)
    b, u = weights.shape[0], len(uniq)
    flat = (np.arange(b)[:, None] * u + inv[None, :]).ravel()
    per_value = np.bincount(flat, weights=weights.ravel(), minlength=b * u).reshape(b, u)
    below = np.cumsum(per_value, axis=1) - per_value
    return (below + (per_value + 1) / 2)[:, inv]


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho of ``x`` and ``y`` (``(n,)``) in each resample given by integer row
    multiplicities ``weights`` (``(B, n)``): equal to ``scipy.stats.spearmanr`` on the sample
    with row ``i`` repeated ``weights[b, i]`` times; NaN where a resample has a constant column."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    rx, ry = _weighted_ranks(np.asarray(x), w), _weighted_ranks(np.asarray(y), w)
    total = w.sum(axis=1, keepdims=True)
    dx = rx - (w * rx).sum(axis=1, keepdims=True) / total
    dy = ry - (w * ry).sum(axis=1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * dx * dy).sum(axis=1) / np.sqrt((w * dx**2).sum(axis=1) * (w * dy**2).sum(axis=1))


def metric_correlation(case_scores: pd.DataFrame, metrics: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                       confidence: float = 0.95, min_cases: int = 5) -> pd.DataFrame:
    """Spearman's rho between the mean human rating of each heatmap and each computed metric.

    ``case_scores``: :func:`case_means`; ``metrics``: the workspace's tidy metric rows (columns
    ``checkpoint_id, method, sample_pk, metric, value``), joined on ``(checkpoint_id, method,
    sample_pk)``. The CI is a percentile bootstrap that resamples images (``sample_pk``) with all
    their heatmaps, like :func:`mean_ratings`. Columns: ``metric, rho, ci_low, ci_high, n_cases``
    (heatmaps with both a rating and the metric), ``n_images, note``; fewer than ``min_cases``
    heatmaps gives NaN and ``note = "not testable: …"``.
    """
    _require(case_scores, [*CASE_KEY, "evidence_match"], "case scores")
    _require(metrics, [*CASE_KEY, "metric", "value"], "metrics")
    key_types = {"checkpoint_id": "Int64", "method": str, "sample_pk": "int64"}
    joined = case_scores[[*CASE_KEY, "evidence_match"]].astype(key_types).merge(
        metrics[[*CASE_KEY, "metric", "value"]].astype(key_types), on=CASE_KEY, how="inner")
    rows = []
    for name, g in joined.groupby("metric", sort=True):  # loop over metrics; resamples are one matrix
        x, y = g["evidence_match"].to_numpy(np.float64), g["value"].to_numpy(np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        g, x, y = g[ok], x[ok], y[ok]
        row = {"metric": name, "n_cases": len(g), "n_images": g["sample_pk"].nunique()}
        if len(g) < min_cases:
            rows.append(row | {"rho": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                               "note": f"not testable: {len(g)} rated heatmap(s) with this metric; needs {min_cases}"})
            continue
        codes, uniques = pd.factorize(g["sample_pk"], sort=True)
        point = float(weighted_spearman(x, y, np.ones((1, len(x))))[0])
        boot = weighted_spearman(x, y, cluster_draws(len(uniques), n_boot, seed)[:, codes])
        _, lo, hi = contrast_ci(point, boot, confidence)
        rows.append(row | {"rho": point, "ci_low": lo, "ci_high": hi,
                           "note": "" if np.isfinite(point) else "not testable: ratings or metric constant"})
    return pd.DataFrame(rows, columns=CORRELATION_COLS)


# ---------------------------------------------------------------------------------------- clicks


def click_distances(points: np.ndarray, masks: np.ndarray, maps: np.ndarray) -> pd.DataFrame:
    """Where each reviewer's click lies relative to the lesion and to the map's peak.

    ``points``: ``(N, 2)`` image coordinates ``(x, y)`` (x = column, y = row), both NaN for no
    click; pixel ``(row, col)`` is the square ``[col, col+1) × [row, row+1)``, so a click lies in
    the image when ``0 <= x < W`` and ``0 <= y < H`` and falls on pixel ``(floor(y), floor(x))``.
    ``masks``: ``(N, H, W)`` bool lesion masks; ``maps``: ``(N, H, W)`` attribution maps.
    Columns: ``inside_lesion`` (nullable bool), ``to_lesion_px`` (0 inside, else the Euclidean
    distance in pixels from the clicked pixel to the nearest lesion pixel; NaN for an empty mask),
    ``to_peak_px`` (distance to the map's maximum, the first in row-major order on ties); NaN/<NA>
    where there is no click. A click outside the image raises :class:`InvalidValueError`.
    """
    pts = np.asarray(points, dtype=np.float64)
    masks, maps = np.asarray(masks, dtype=bool), np.asarray(maps, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or masks.ndim != 3 or maps.shape != masks.shape or len(pts) != len(masks):
        raise ShapeError(f"expected points (N, 2) and masks, maps (N, H, W) of one shape; got points {pts.shape}, "
                         f"masks {masks.shape}, maps {maps.shape}")
    n, h, w = masks.shape
    nan = np.isnan(pts)
    if np.any(nan[:, 0] != nan[:, 1]):
        raise InvalidValueError(f"click {int(np.argmax(nan[:, 0] != nan[:, 1]))} has only one coordinate; "
                                "give both x and y or neither")
    clicked = ~nan[:, 0]
    outside = clicked & ~((pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h))
    if outside.any():
        i = int(np.argmax(outside))
        raise InvalidValueError(f"click {i} at (x={pts[i, 0]:g}, y={pts[i, 1]:g}) lies outside the {w}×{h} image; "
                                f"clicks need 0 <= x < {w} and 0 <= y < {h}")
    inside = pd.array([pd.NA] * n, dtype="boolean")
    to_lesion, to_peak = np.full(n, np.nan), np.full(n, np.nan)
    idx = np.flatnonzero(clicked)
    if idx.size:
        col, row = np.floor(pts[idx, 0]).astype(int), np.floor(pts[idx, 1]).astype(int)
        m = masks[idx]
        inside[idx] = m[np.arange(idx.size), row, col]
        has_lesion = m.reshape(idx.size, -1).any(axis=1)
        if has_lesion.any():
            # one EDT over the stack: slices set h + w apart, farther than any in-slice distance
            dist = ndimage.distance_transform_edt(~m, sampling=(h + w, 1, 1))[np.arange(idx.size), row, col]
            to_lesion[idx] = np.where(has_lesion, dist, np.nan)
        peak = np.nan_to_num(maps[idx], nan=-np.inf).reshape(idx.size, -1).argmax(axis=1)
        to_peak[idx] = np.hypot(row - peak // w, col - peak % w)
    return pd.DataFrame({"inside_lesion": inside, "to_lesion_px": to_lesion, "to_peak_px": to_peak})
