"""A rated study's results through the core: unblinded ratings, means by method, agreement, catch
trials, the relation to stored ground-truth metrics, click distances; admins only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.review_seed import METHODS, PASSWORD, REVIEWERS, seed_review_workspace
from tests.seed import add_gt_rows
from xai_core.errors import AccessDenied
from xai_core.review import accounts, reading, studies
from xai_core.review.accounts import LOCAL
from xai_core.review.results import ratings_frame, study_results


def test_results_of_a_rated_study(workspace: Path) -> None:
    ws = seed_review_workspace()
    samples = tuple(int(p) for p in ws.test_pks[2:8])
    for ckpt in ws.checkpoints:  # precision rows for the rated maps: the seeded maps are the masks plus noise
        for method in METHODS:
            add_gt_rows(ckpt, method, ws.test_pks, ws.masks.astype(np.float32) + 0.01 * np.arange(len(ws.masks))[:, None, None],
                        ws.masks, [True] * len(ws.masks))
    studies.create_study(studies.StudySpec("s", ws.checkpoints, METHODS, REVIEWERS, samples=samples, catch_trials=4,
                                           show_contour=True), actor=LOCAL)
    key = studies.unblinding_key("s", actor=LOCAL).set_index("case_key")
    lesion_point = {}
    for pk, mask in zip(ws.test_pks, ws.masks):
        ys, xs = np.nonzero(mask)
        lesion_point[int(pk)] = (float(xs[0]) + 0.5, float(ys[0]) + 0.5)
    for reviewer in REVIEWERS:
        for _, case_key, _ in reading.queue("s", reviewer):
            case = key.loc[case_key]
            if case.is_catch:  # rex rates every catch trial as matching: the careless reader
                score = 5 if reviewer == "rex" else 1
            else:
                score = 4 if case.method == "saliency" else 2
            reading.submit_rating("s", reviewer, case_key, score, score >= 3, point=lesion_point[int(case.sample_pk)])
    ratings = ratings_frame("s", actor=LOCAL)
    assert len(ratings) == (2 * 2 * 6 + 4) * 2 and set(ratings.reviewer) == set(REVIEWERS)
    res = study_results("s", actor=LOCAL, n_boot=200)
    by_method = res.means["method"].set_index("method")
    assert by_method.loc["saliency", "evidence_match"] == 4 and by_method.loc["gradcam", "evidence_match"] == 2
    assert set(res.means) == {"method", "checkpoint", "pretrain", "degree"}
    catch = res.catch.set_index("reviewer")
    assert catch.loc["rex", "rate"] == 1 and catch.loc["rex", "flagged"] == (catch.loc["rex", "n_catch"] >= 2)
    assert (catch.loc[["rae", "roy"], "n_failed"] == 0).all() and not catch.loc[["rae", "roy"], "flagged"].any()
    assert catch.n_catch.sum() == 8
    alpha = res.agreement.set_index("measure").iloc[0]
    assert alpha["value"] == pytest.approx(1.0)  # every reader gives the same score to the same map
    assert (res.clicks["to_lesion_px"] == 0).all() and res.clicks["inside_lesion"].all()
    assert len(res.clicks) == len(ratings)
    assert "precision" in set(res.correlation["metric"])
    assert not res.mrmc.empty and "status" in res.mrmc.columns
    rex = accounts.session_actor(accounts.authenticate("rex", PASSWORD))
    with pytest.raises(AccessDenied):
        study_results("s", actor=rex)


def test_a_study_without_ratings_has_empty_results(workspace: Path) -> None:
    ws = seed_review_workspace()
    studies.create_study(studies.StudySpec("e", ws.checkpoints, METHODS[:1], REVIEWERS[:2],
                                           samples=(int(ws.test_pks[3]),)), actor=LOCAL)
    res = study_results("e", actor=LOCAL)
    assert res.ratings.empty and res.means == {} and res.agreement.empty
