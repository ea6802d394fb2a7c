"""Results of the reading studies (admins): mean ratings with CIs, the MRMC method comparison,
agreement, catch-trial failures, ratings against the ground-truth metrics and drift, click
distances, and the unblinded ratings as CSV. Reviewer notes are shown only through st.dataframe
(escaped) and exported spreadsheet-safe."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ui.auth import acting
from ui.common import lazy_tabs, user_errors
from xai_core.review import results, studies
from xai_core.review.accounts import Actor, require_admin
from xai_core.review.export import to_csv
from xai_core.review.figures import mean_ratings_figure
from xai_core.stamp import change_stamp

VIEWS = ("Mean ratings", "Method comparison (MRMC)", "Agreement", "Catch trials", "Metrics and drift", "Clicks",
         "Ratings")
NOT_TESTABLE = "not testable"


@st.cache_data(show_spinner="Computing the study's statistics…", max_entries=8)
def _results(study: str, who: tuple[str, str], stamp: tuple, _actor: Actor) -> results.StudyResults:
    """:func:`results.study_results`, keyed on the study, the acting account, the workspace and
    :func:`studies.results_stamp` (a changed or submitted rating recomputes)."""
    return results.study_results(study, actor=_actor)


@st.cache_resource(show_spinner=False, max_entries=32)
def _means_figure(study: str, by: str, who: tuple[str, str], stamp: tuple, _means: pd.DataFrame) -> go.Figure:
    return mean_ratings_figure(_means, by)


def _status_lines(frame: pd.DataFrame, column: str, label: str = "") -> None:
    """Every distinct "not testable: …" line of ``frame[column]`` as a warning (never hidden)."""
    if column not in frame:
        return
    for line in dict.fromkeys(str(v) for v in frame[column].dropna() if str(v).startswith(NOT_TESTABLE)):
        st.warning(f"{label}{line}" if label else line)


def mean_ratings(res: results.StudyResults, who: tuple[str, str], stamp: tuple) -> None:
    by = st.radio("Mean ratings by", list(res.means), horizontal=True, key="results_by")
    means = res.means[by]
    st.caption("Mean evidence-match rating (1–5) and share rated plausible with 95% bootstrap CIs that resample "
               "images (all readers of an image together); catch trials left out.")
    st.dataframe(means, hide_index=True, width="stretch")
    if not means.empty:
        st.plotly_chart(_means_figure(res.study, by, who, stamp, means), width="stretch")


def mrmc(res: results.StudyResults) -> None:
    frame = res.mrmc
    st.caption("Multi-reader multi-case comparison of the methods: a linear mixed model with crossed random "
               "effects of readers and images and their interactions with the method (REML; t CIs and "
               "p-values with readers − 1 degrees of freedom, against the reference method).")
    statuses = frame["status"].dropna().astype(str).unique().tolist() if "status" in frame else []
    if statuses and all(s == "ok" for s in statuses):
        st.success("Status: ok")
    _status_lines(frame, "status", "Status: ")
    for note in dict.fromkeys(str(n) for n in frame.get("note", pd.Series(dtype=str)).dropna() if str(n)):
        st.info(note)
    st.dataframe(frame, hide_index=True, width="stretch")
    variance = frame.attrs.get("variance") or {}
    if variance:
        st.caption("Variance components")
        st.dataframe(pd.DataFrame({"component": list(variance), "variance": list(variance.values())}),
                     hide_index=True)


def agreement(res: results.StudyResults) -> None:
    st.caption("Krippendorff's alpha (ordinal for the 1–5 rating, nominal for plausible) and Fleiss' kappa over "
               "the cases read by at least two readers, with bootstrap CIs over cases; catch trials left out.")
    _status_lines(res.agreement, "note")
    st.dataframe(res.agreement, hide_index=True, width="stretch")


def _flag_rows(row: pd.Series) -> list[str]:
    colour = "background-color: rgba(255, 75, 75, 0.25)" if bool(row.get("flagged")) else ""
    return [colour] * len(row)


def catch_trials(res: results.StudyResults) -> None:
    frame = res.catch
    st.caption("A catch trial (a random or edge map) fails when the reader rates it as matching the lesion; "
               "failure rates with Wilson CIs. Flagged readers (highlighted) fail too often.")
    if frame.empty:
        st.info("No catch-trial ratings yet.")
        return
    flagged = frame.loc[frame["flagged"].astype(bool), "reviewer"].tolist()
    if flagged:
        st.warning(f"Flagged readers: {', '.join(flagged)} — their other ratings deserve a second look.")
    st.dataframe(frame.style.apply(_flag_rows, axis=1), hide_index=True, width="stretch")


def correlation(res: results.StudyResults) -> None:
    st.caption("Spearman's rho between the mean human rating of each heatmap and its computed ground-truth "
               "metrics and drift (from the checkpoint's parent), with image-clustered bootstrap CIs.")
    if res.correlation.empty:
        st.info("No stored ground-truth metric or drift value of the rated maps: run `xaudit evaluate` and "
                "`xaudit drift` for the study's checkpoints.")
        return
    _status_lines(res.correlation, "note")
    st.dataframe(res.correlation, hide_index=True, width="stretch")


def clicks(res: results.StudyResults) -> None:
    st.caption("Where readers clicked the evidence: inside the lesion or not, distance in pixels to the lesion "
               "and to the map's peak.")
    if res.clicks.empty:
        st.info("No rating with a click yet.")
        return
    st.dataframe(res.clicks, hide_index=True, width="stretch")


def ratings(res: results.StudyResults) -> None:
    st.caption("Every rating, unblinded (method, checkpoint, catch trial). Notes are reviewers' free text.")
    st.dataframe(res.ratings, hide_index=True, width="stretch")
    st.download_button("Download the ratings (CSV)", to_csv(res.ratings), file_name=f"{res.study}-ratings.csv",
                       mime="text/csv", key="ratings_csv")


with user_errors():
    actor = acting()
    st.title("Reading-study results")
    st.caption("What the reviewers' blinded ratings say about the attribution methods (admins only).")
    require_admin(actor, "the Results page")
    listing = studies.list_studies()
    if listing.empty:
        st.info("No reading study yet: create one on the Admin page.")
        st.stop()
    study = st.selectbox("Study", listing["study"].tolist(), key="results_study")
    row = listing.set_index("study").loc[study]
    st.caption(f"{row['status']} · {row['cases']} cases · {row['reviewers']} reviewers · "
               f"{row['rated']} of {row['assigned']} readings done")
    who = (actor.name, actor.role)
    stamp = (change_stamp(), studies.results_stamp(study))  # change_stamp(): the workspace and database
    res = _results(study, who, stamp, actor)
    if res.ratings.empty:
        st.info("No ratings in this study yet: the results appear once reviewers rate cases.")
        st.stop()
    real = res.ratings[~res.ratings["is_catch"]]
    cols = st.columns(4)
    cols[0].metric("Ratings", len(res.ratings))
    cols[1].metric("Readers", res.ratings["reviewer"].nunique())
    cols[2].metric("Images rated", real["sample_pk"].nunique())
    cols[3].metric("Catch-trial ratings", int(res.ratings["is_catch"].sum()))
    views = lazy_tabs(VIEWS, "results_view")
    if views["Mean ratings"].open:
        with views["Mean ratings"]:
            mean_ratings(res, who, stamp)
    for label, draw in ((VIEWS[1], mrmc), (VIEWS[2], agreement), (VIEWS[3], catch_trials), (VIEWS[4], correlation),
                        (VIEWS[5], clicks), (VIEWS[6], ratings)):
        if views[label].open:
            with views[label]:
                draw(res)
