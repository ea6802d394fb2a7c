"""A study's results for admins: the unblinded ratings and what they say — mean ratings with
bootstrap CIs, the multi-reader multi-case method comparison, inter-rater agreement, catch-trial
failures, the relation of ratings to the ground-truth metrics and drift, and click distances.
The statistics are in :mod:`xai_core.review.statistics`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import select

from db import (Checkpoint, Dataset, DriftMetric, GroundTruthMetric, ReviewAssignment, ReviewCase, ReviewRating,
                Sample, User, session_scope)
from xai_core.review import statistics
from xai_core.review.accounts import Actor, require_admin
from xai_core.review.reading import case_arrays, study_row

GROUPINGS = ("method", "checkpoint", "pretrain", "degree")  # the tables of mean ratings
RATING_COLUMNS = ["study", "reviewer", "case_key", "sample_pk", "sample_id", "label", "checkpoint_id", "checkpoint",
                  "arch", "pretrain", "degree", "method", "is_catch", "evidence_match", "plausible", "note",
                  "point_x", "point_y", "submitted", "updated_at"]


@dataclass
class StudyResults:
    study: str
    ratings: pd.DataFrame
    means: dict[str, pd.DataFrame] = field(default_factory=dict)  # by each of GROUPINGS
    mrmc: pd.DataFrame = field(default_factory=pd.DataFrame)
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    catch: pd.DataFrame = field(default_factory=pd.DataFrame)
    correlation: pd.DataFrame = field(default_factory=pd.DataFrame)
    clicks: pd.DataFrame = field(default_factory=pd.DataFrame)


def ratings_frame(study: str, *, actor: Actor) -> pd.DataFrame:
    """One row per rating with what the case was (method, checkpoint, catch trial): unblinded, admins only."""
    require_admin(actor, f"the ratings of study {study!r}")
    with session_scope() as session:
        sid = study_row(session, study).id
        rows = session.execute(
            select(User.name, ReviewCase.case_key, ReviewCase.sample_pk, Sample.sample_id, Sample.label,
                   ReviewCase.checkpoint_id, Checkpoint.name, Checkpoint.arch, Checkpoint.pretrain, Checkpoint.degree,
                   ReviewCase.method, ReviewCase.is_catch, ReviewRating.evidence_match, ReviewRating.plausible,
                   ReviewRating.note, ReviewRating.point_x, ReviewRating.point_y, ReviewAssignment.submitted_at,
                   ReviewRating.updated_at)
            .join(ReviewCase, ReviewRating.case_id == ReviewCase.id)
            .join(User, ReviewRating.reviewer_id == User.id)
            .join(ReviewAssignment, (ReviewAssignment.case_id == ReviewCase.id)
                  & (ReviewAssignment.reviewer_id == ReviewRating.reviewer_id))
            .join(Checkpoint, ReviewCase.checkpoint_id == Checkpoint.id)
            .join(Sample, ReviewCase.sample_pk == Sample.id)
            .where(ReviewRating.study_id == sid).order_by(ReviewRating.id)
        ).all()
    frame = pd.DataFrame([(study, *r) for r in rows], columns=RATING_COLUMNS)
    frame["submitted"] = frame["submitted"].notna()
    for col in ("point_x", "point_y"):
        frame[col] = frame[col].astype(float)
    return frame.astype({"evidence_match": int, "plausible": bool, "is_catch": bool})


def _metric_rows(ratings: pd.DataFrame) -> pd.DataFrame:
    """The stored ground-truth metrics of the rated maps and the drift of each rated map from its
    checkpoint's parent (same method and sample), long form: checkpoint_id, method, sample_pk, metric, value."""
    real = ratings[~ratings.is_catch]
    if real.empty:
        return pd.DataFrame(columns=["checkpoint_id", "method", "sample_pk", "metric", "value"])
    ckpts, methods, samples = (sorted(set(real[c].astype(int))) if c != "method" else sorted(set(real[c]))
                               for c in ("checkpoint_id", "method", "sample_pk"))
    with session_scope() as session:
        gt = session.execute(
            select(GroundTruthMetric.checkpoint_id, GroundTruthMetric.method, GroundTruthMetric.sample_pk,
                   GroundTruthMetric.metric, GroundTruthMetric.value)
            .where(GroundTruthMetric.checkpoint_id.in_(ckpts), GroundTruthMetric.method.in_(methods),
                   GroundTruthMetric.sample_pk.in_(samples))).all()
        drift = session.execute(
            select(DriftMetric.checkpoint_b_id, DriftMetric.method_b, DriftMetric.sample_pk, DriftMetric.metric,
                   DriftMetric.value)
            .where(DriftMetric.checkpoint_b_id.in_(ckpts), DriftMetric.method_b.in_(methods),
                   DriftMetric.method_a == DriftMetric.method_b, DriftMetric.sample_pk.in_(samples))).all()
    columns = ["checkpoint_id", "method", "sample_pk", "metric", "value"]
    frame = pd.concat([pd.DataFrame(gt, columns=columns),
                       pd.DataFrame(drift, columns=columns).assign(metric=lambda f: "drift: " + f.metric)])
    # several parameter sets of a method (or several drift partners) average into one value per map
    return frame.groupby(columns[:4], as_index=False)["value"].mean()


def _click_rows(ratings: pd.DataFrame) -> pd.DataFrame:
    """Distance of every click to the lesion and to the map's peak (rows with a click only)."""
    clicked = ratings[ratings.point_x.notna()]
    if clicked.empty:
        return pd.DataFrame()
    with session_scope() as session:
        cases = {key: (params, name) for key, params, name in session.execute(
            select(ReviewCase.case_key, ReviewCase.params, Dataset.name)
            .join(Sample, ReviewCase.sample_pk == Sample.id).join(Dataset, Sample.dataset_id == Dataset.id)
            .where(ReviewCase.case_key.in_(set(clicked.case_key))))}
    arrays = [case_arrays(int(r.checkpoint_id), r.method, dict(cases[r.case_key][0]), int(r.sample_pk),
                          cases[r.case_key][1]) for r in clicked.itertuples()]
    distances = statistics.click_distances(clicked[["point_x", "point_y"]].to_numpy(float),
                                           np.stack([a[1] for a in arrays]), np.stack([a[2] for a in arrays]))
    keep = clicked[["reviewer", "case_key", "method", "checkpoint", "is_catch"]].reset_index(drop=True)
    return pd.concat([keep, distances.reset_index(drop=True)], axis=1)


def study_results(study: str, *, actor: Actor, n_boot: int = 2000, seed: int = 0) -> StudyResults:
    """Everything the Results page, the export and the report show about ``study`` (admins only)."""
    ratings = ratings_frame(study, actor=actor)
    results = StudyResults(study, ratings)
    if ratings.empty:
        return results
    results.means = {by: statistics.mean_ratings(ratings, [by], n_boot=n_boot, seed=seed) for by in GROUPINGS}
    results.mrmc = statistics.mrmc_comparison(ratings[~ratings.is_catch], factor="method")
    results.agreement = statistics.agreement(ratings, seed=seed)
    results.catch = statistics.catch_failures(ratings)
    results.correlation = statistics.metric_correlation(statistics.case_means(ratings), _metric_rows(ratings),
                                                        seed=seed)
    results.clicks = _click_rows(ratings)
    return results
