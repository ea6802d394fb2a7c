"""AppTest of the Results page on a review workspace with ratings submitted through the core: the
page shows what ``study_results`` returns (means, MRMC status, agreement, catch-trial flags,
clicks), reviewer notes only escaped, and the ratings as CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.seed import add_precision_rows
from tests.review_seed import ADMIN, METHODS, PASSWORD, REVIEWERS, ReviewWorkspace, run_view, seed_review_workspace
from xai_core.review import accounts, reading, results, studies
from xai_core.review.accounts import LOCAL, Actor

NOTE = "<script>alert('x')</script> **bold** =HYPERLINK(\"http://evil\")"
SCORE = {"saliency": 4, "gradcam": 2}  # what every reader answers per method (catch trials: see rate_all)


@pytest.fixture
def ws(workspace: Path) -> ReviewWorkspace:
    return seed_review_workspace()


def rate_all(ws: ReviewWorkspace, n_images: int = 10, seed: int = 0) -> pd.DataFrame:
    """Study "s1": 2 checkpoints × 2 methods × ``n_images`` images + 4 catch trials, 3 readers, 2
    per case, every case rated: saliency around 4, gradcam around 2 with reader and image effects and noise; rex says every
    catch trial matches (5), the others 1. Rex clicks the lesion's first pixel and writes a note.
    Ground-truth precision is stored for every map (saliency 0.8, gradcam 0.3, plus noise).
    Returns what was given: reviewer, method, is_catch, score per reading."""
    rng = np.random.default_rng(seed)
    pks = [int(p) for p in ws.test_pks[2:2 + n_images]]
    studies.create_study(studies.StudySpec(name="s1", checkpoints=ws.checkpoints, methods=METHODS,
                                           reviewers=REVIEWERS, samples=tuple(pks), catch_trials=4,
                                           show_contour=True), actor=LOCAL)
    for ckpt in ws.checkpoints:
        for method in METHODS:
            add_precision_rows(ckpt, method, pks, {"saliency": 0.8, "gradcam": 0.3}[method] + 0.1 * rng.random(len(pks)))
    key = studies.unblinding_key("s1", actor=LOCAL).set_index("case_key")
    # a rating = method level + reader, image, reader × method, image × method effects + noise, rounded
    reader_effect = dict(zip(REVIEWERS, rng.normal(0, 0.5, len(REVIEWERS))))
    image_effect = dict(zip(pks, rng.normal(0, 0.6, len(pks))))
    reader_method = {(r, m): rng.normal(0, 0.3) for r in REVIEWERS for m in METHODS}
    image_method = {(p, m): rng.normal(0, 0.3) for p in pks for m in METHODS}
    given = []
    for reader in REVIEWERS:
        for _, case, _ in reading.queue("s1", reader):
            row = key.loc[case]
            if row["is_catch"]:
                score = 5 if reader == "rex" else 1
            else:
                m, pk = row["method"], int(row["sample_pk"])
                latent = (SCORE[m] + reader_effect[reader] + image_effect[pk] + reader_method[(reader, m)]
                          + image_method[(pk, m)] + rng.normal(0, 0.5))
                score = int(np.clip(np.rint(latent), 1, 5))
            point, note = None, ""
            if reader == "rex" and not row["is_catch"]:
                ys, xs = ws.masks[list(ws.test_pks).index(row["sample_pk"])].nonzero()
                point, note = (int(xs[0]) + 0.5, int(ys[0]) + 0.5), NOTE
            reading.submit_rating("s1", reader, case, score, score >= 3, note=note, point=point)
            given.append({"reviewer": reader, "method": row["method"], "is_catch": row["is_catch"], "score": score})
    return pd.DataFrame(given)


def results_page(actor: Actor | None = None, view: str | None = None) -> AppTest:
    at = run_view("results", actor, timeout=180, **({"results_view": view} if view else {}))
    assert not at.exception, at.exception
    return at


def test_no_study_and_no_ratings(ws: ReviewWorkspace) -> None:
    at = results_page()
    assert [i.value for i in at.info] == ["No reading study yet: create one on the Admin page."]
    studies.create_study(studies.StudySpec(name="s0", checkpoints=ws.checkpoints, methods=("saliency",),
                                           reviewers=REVIEWERS, n_random=2), actor=LOCAL)
    at = results_page()
    assert [i.value for i in at.info] == ["No ratings in this study yet: the results appear once reviewers rate cases."]


def test_shows_the_numbers_the_core_returns(ws: ReviewWorkspace) -> None:
    given = rate_all(ws)
    expected = results.study_results("s1", actor=LOCAL)
    at = results_page()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Ratings": "88", "Readers": "3", "Images rated": "10", "Catch-trial ratings": "8"}
    means = at.dataframe[0].value
    pd.testing.assert_frame_equal(means.reset_index(drop=True), expected.means["method"].reset_index(drop=True))
    by_method = means.set_index("method")
    hand = given[~given["is_catch"]].groupby("method")["score"].agg(["mean", "size"])
    assert by_method["n_ratings"].to_dict() == {"gradcam": 40, "saliency": 40} == hand["size"].to_dict()
    assert by_method["evidence_match"].to_dict() == pytest.approx(hand["mean"].to_dict())
    assert by_method.loc["gradcam", "evidence_match"] + 1 < by_method.loc["saliency", "evidence_match"]
    (chart,) = at.get("plotly_chart")
    evidence = json.loads(chart.proto.spec)["data"][0]
    assert evidence["x"] == by_method.index.tolist()
    assert evidence["error_y"]["array"] == pytest.approx((by_method["evidence_ci_high"] - by_method["evidence_match"]).tolist())
    at.radio(key="results_by").set_value("degree").run()
    pd.testing.assert_frame_equal(at.dataframe[0].value.reset_index(drop=True),
                                  expected.means["degree"].reset_index(drop=True))
    assert at.dataframe[0].value["degree"].tolist() == ["tl", "all"]


def test_mrmc_agreement_catch_flags_correlation_and_clicks(ws: ReviewWorkspace) -> None:
    rate_all(ws)
    expected = results.study_results("s1", actor=LOCAL)
    assert expected.mrmc["status"].tolist() == ["ok"]
    at = results_page(view="Method comparison (MRMC)")
    assert [s.value for s in at.success] == ["Status: ok"] and not at.warning
    shown = at.dataframe[0].value
    assert shown[["level", "reference"]].values.tolist() == [["saliency", "gradcam"]]
    assert shown["estimate"].iloc[0] == pytest.approx(expected.mrmc["estimate"].iloc[0])
    assert shown["p_value"].iloc[0] == pytest.approx(expected.mrmc["p_value"].iloc[0]) and shown["p_value"].iloc[0] < 0.05
    variance = at.dataframe[1].value.set_index("component")["variance"].to_dict()
    assert variance == pytest.approx(expected.mrmc.attrs["variance"])

    at.session_state["results_view"] = "Agreement"
    at.run()
    agreement = at.dataframe[0].value
    assert agreement["measure"].tolist() == ["krippendorff_alpha_ordinal", "krippendorff_alpha_nominal", "fleiss_kappa"]
    assert agreement["value"].tolist() == pytest.approx(expected.agreement["value"].tolist())
    assert agreement["ci_low"].tolist() == pytest.approx(expected.agreement["ci_low"].tolist())

    at.session_state["results_view"] = "Catch trials"
    at.run()
    catch = at.dataframe[0].value.set_index("reviewer")
    assert catch["rate"].to_dict() == {"rae": 0.0, "rex": 1.0, "roy": 0.0}
    assert catch["flagged"].to_dict() == {"rae": False, "rex": True, "roy": False}
    assert catch["n_catch"].sum() == 8
    assert [w.value for w in at.warning] == ["Flagged readers: rex — their other ratings deserve a second look."]

    at.session_state["results_view"] = "Metrics and drift"
    at.run()
    corr = at.dataframe[0].value.set_index("metric")
    assert corr.loc["precision", "rho"] == pytest.approx(expected.correlation.set_index("metric").loc["precision", "rho"])
    assert corr.loc["precision", "rho"] > 0.5 and corr.loc["precision", "n_cases"] == 40  # 2 ckpt × 2 methods × 10

    at.session_state["results_view"] = "Clicks"
    at.run()
    clicks = at.dataframe[0].value
    assert len(clicks) == len(expected.ratings.query("reviewer == 'rex' and not is_catch")) > 0
    assert set(clicks["reviewer"]) == {"rex"} and clicks["inside_lesion"].all()
    assert (clicks["to_lesion_px"] == 0).all()


def test_a_changed_rating_shows_at_once(ws: ReviewWorkspace) -> None:
    rate_all(ws, n_images=4)
    at = results_page()
    before = at.dataframe[0].value.set_index("method").loc["gradcam", "evidence_match"]
    key = studies.unblinding_key("s1", actor=LOCAL).set_index("case_key")
    case = next(k for _, k, _ in reading.queue("s1", "rae") if key.loc[k, "method"] == "gradcam")
    old = next(r for r in reading.my_ratings("s1", "rae", owner="rae") if r["case_key"] == case)["evidence_match"]
    new = 5 if old != 5 else 1
    reading.submit_rating("s1", "rae", case, new, True)  # same row, count and id: only its change time moves
    at.run()
    after = at.dataframe[0].value.set_index("method").loc["gradcam", "evidence_match"]
    assert after == pytest.approx(before + (new - old) / 16)  # 2 checkpoints × 4 images × 2 readers


def test_an_mrmc_that_is_not_testable_says_so(ws: ReviewWorkspace) -> None:
    rate_all(ws, n_images=4)
    at = results_page(view="Method comparison (MRMC)")
    assert [w.value for w in at.warning] == ["Status: not testable: 4 case(s); the comparison needs at least 5"]
    assert not at.success
    assert at.dataframe[0].value["estimate"].isna().all()


def test_ratings_table_escapes_notes_and_downloads_csv(ws: ReviewWorkspace) -> None:
    rate_all(ws)
    at = results_page(view="Ratings")
    table = at.dataframe[0].value
    assert len(table) == 88 and (table["note"] == NOTE).sum() == len(table.query("reviewer == 'rex' and not is_catch"))
    rendered = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert not any("<script>" in text or "HYPERLINK" in text for text in rendered)  # notes only in the grid
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the ratings (CSV)"


def test_reviewers_are_refused(ws: ReviewWorkspace) -> None:
    rex = accounts.session_actor(accounts.authenticate("rex", PASSWORD))
    at = results_page(rex)
    assert [e.value for e in at.error] == ["the Results page is for admins only; sign in as an admin"]
    assert not at.dataframe
