"""Overview (landing page): sign-in mode, what the workspace holds, the demo build's progress, headline
findings; for admins, the demo accounts' passwords until they are changed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ui.auth import acting
from ui.common import user_errors
from xai_core.config import home
from xai_core.findings import OPPOSITE, REPRODUCED, UNTESTABLE, VERDICT_TONES, VERDICTS, headline_findings
from xai_core.inventory import inventory
from xai_core.report import write_report
from xai_core.review.accounts import Actor, list_users, login_enabled
from xai_core.review.demo_accounts import read_demo_accounts
from xai_core.stamp import change_stamp
from xai_core.status import read_status
from xai_core.sweep.tracking import latest_sweep

st.title("xaudit — can these heatmaps be trusted?")
st.markdown(
    "Audits attribution maps of medical-image classifiers two ways: against **ground-truth lesion "
    "masks** on a benchmark of artificial lesions on real MRI anatomy (Oliveira et al. 2024), and "
    "by the **drift** of the maps between a transfer-learning checkpoint and its fine-tuned "
    "successor (Elangovan & Ting 2026)."
)


def access(actor: Actor) -> None:
    """Which mode the dashboard runs in; for an admin, the demo accounts whose generated password still works."""
    if not login_enabled():
        st.caption(":material/person: Single-user mode: no sign-in (the workspace has no active admin account; "
                   "`xaudit users add NAME --role admin` turns sign-in on).")
    else:
        users = list_users()
        active = users.loc[~users["disabled"].astype(bool)]
        roles = active["role"].value_counts()
        st.caption(f":material/lock: Sign-in mode with {len(active)} active accounts "
                   f"({roles.get('admin', 0)} admin, {roles.get('reviewer', 0)} reviewer).")
    kept = read_demo_accounts() if actor.is_admin else []
    if kept:
        with st.expander(f"Demo accounts ({len(kept)}) — admins only", icon=":material/key:"):
            st.table(pd.DataFrame([{"account": a.name, "role": a.role, "password": a.password} for a in kept])
                     .set_index("account"))
            st.warning("These passwords were generated for the demo. Change them before anyone else reaches this "
                       "dashboard (`xaudit users reset-password NAME`, or the Admin page); a changed password "
                       "leaves this list.")


def build_progress() -> None:
    """The demo build's stages (a fragment that refreshes itself while the build runs)."""
    status = read_status()
    if status is None:
        return
    st.subheader("Demo build" + (" — complete" if status.finished else " — in progress"))
    rows = [{"stage": s.title, "state": s.state,
             "progress": f"{s.done}/{s.total}" if s.total else "",
             "seconds": "—" if s.seconds is None else f"{s.seconds:.1f}", "details": s.message}
            for s in status.stages]
    st.table(pd.DataFrame(rows).set_index("stage"))  # small tables: static (a data grid costs ~0.3 s per view)
    running = [s for s in status.stages if s.state == "running" and s.total]
    for stage in running:
        st.progress(min(1.0, stage.done / stage.total), text=f"{stage.title}: {stage.message}")
    with st.expander(f"Demo settings ({status.preset}); `xaudit demo` builds the full size"):
        st.json(status.settings)


def sweep_progress() -> None:
    """The newest sweep's stages: tasks planned, stored before, queued, running, done, failed, and nodes."""
    latest = latest_sweep()
    if latest is None:
        return
    info, frame = latest
    st.subheader(f"Sweep: {info['study']} — {info['state']}")
    where = f" at {info['address']}" if info["address"] else ""
    st.caption(f"run {info['id']}, executor {info['executor']}{where}, started {info['started_at']:%Y-%m-%d %H:%M}; "
               "`xaudit sweep status` prints the same")
    st.table(frame.set_index("stage"))
    if info["error"]:
        st.error(f"failed: {info['error']}")


POLL_S = 5.0  # how often the build table refreshes while the demo build runs


TONE_COLOURS = {"good": "green", "bad": "red", "warn": "orange", "none": "gray"}
BADGE_ICONS = {REPRODUCED: ":material/check_circle:", OPPOSITE: ":material/swap_vert:", UNTESTABLE: ":material/block:"}
_MARKDOWN_SPECIAL = "\\`*_{}[]<>()#+-.!|$~:"


def md_escape(text: str) -> str:
    """``text`` shown literally in ``st.markdown`` (CI brackets, method names with underscores)."""
    return "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in str(text))


def finding_card(finding: pd.Series) -> None:
    """One finding in a bordered card: verdict badge and study, then claim, evidence and how it was decided."""
    with st.container(border=True):
        colour = TONE_COLOURS[VERDICT_TONES.get(finding["verdict"], "none")]
        icon = BADGE_ICONS.get(finding["verdict"], ":material/remove:")
        st.markdown(f":{colour}-badge[{icon} {md_escape(finding['verdict'])}] &nbsp; "
                    f":gray[{md_escape(finding['study'])}]")
        st.markdown(f"**Claim:** {md_escape(finding['claim'])}")
        st.markdown(f"**Evidence:** {md_escape(finding['evidence'])}")
        if finding.get("rule"):
            with st.expander("How this verdict is decided (thresholds and reasons)"
                             if finding["verdict"] != UNTESTABLE else "Why it is not testable here",
                             expanded=finding["verdict"] == UNTESTABLE):
                st.markdown(md_escape(finding["rule"]))


FINDINGS_TABLES = ("gt_metrics", "drift_metrics", "checkpoints", "samples", "predictions")  # what findings read


@st.cache_data(show_spinner="Computing headline findings…", max_entries=4)
def cached_findings(stamp: tuple) -> pd.DataFrame:
    """Keyed on :func:`change_stamp` of :data:`FINDINGS_TABLES` (workspace and rows)."""
    return pd.DataFrame([f.__dict__ for f in headline_findings()])


with user_errors():
    access(acting())
    status = read_status()
    # poll only while the build runs: a fragment timer left running delays the next page's first draw
    st.fragment(build_progress, run_every=None if status is None or status.finished else POLL_S)()
    sweep_progress()
    parts = inventory()
    st.subheader("This workspace")
    st.caption(f"`{home()}`")
    st.table(pd.DataFrame([{"part": p.name, "count": p.count,
                            "details": p.detail if p.present else f"missing — run `{p.command}`"}
                           for p in parts]).set_index("part"))
    if not parts[0].present:
        st.info("No data yet. Build the demo workspace with `make demo` (or `xaudit demo`), "
                "or a benchmark with `xaudit data build --name mri-lesions`.")

    st.subheader("Headline findings on this workspace")
    findings = cached_findings(change_stamp(*FINDINGS_TABLES))
    counts = findings["verdict"].value_counts()
    st.caption(" · ".join(f"{verdict}: {counts[verdict]}" for verdict in VERDICTS if verdict in counts))
    for _, finding in findings.iterrows():
        finding_card(finding)

    st.subheader("Report")
    st.caption("A self-contained HTML report with the figures and both studies' tables "
               "(`xaudit report` writes it with its CSV tables).")
    if st.button("Write report"):
        path = write_report()
        st.session_state["report_path"] = str(path)
    if "report_path" in st.session_state:
        report_file = Path(st.session_state["report_path"])
        st.download_button("Download report.html", report_file.read_bytes(), file_name="xaudit-report.html",
                           mime="text/html")
        st.caption(f"written to `{report_file.parent}` with its CSV tables")

    st.subheader("Where next")
    cols = st.columns(5)
    for col, (page, label) in zip(cols, [
        ("views/data.py", "Browse the benchmark"), ("views/models.py", "Models and training"),
        ("views/explain.py", "Explain an image"), ("views/benchmark.py", "Precision tables"),
        ("views/drift.py", "TL→FT drift"),
    ], strict=True):
        with col:
            st.page_link(page, label=label)
