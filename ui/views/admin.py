"""Admin: accounts, reading studies (create, status, close/reopen, unblinding key) and the audit log.

Every change goes through :mod:`xai_core.review` with the acting account (``ui.auth.acting()``);
the core refuses and logs what the role may not do. Only the open tab runs.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from ui.auth import acting
from ui.common import lazy_tabs, user_errors
from xai_core.attribution import capabilities, get_method, list_methods
from xai_core.catalog import checkpoint_table, sample_index
from xai_core.review import accounts, audit, studies
from xai_core.review.accounts import Actor

TABS = ("Accounts", "Studies", "Audit log")
ALL = "(all)"


def _flash(message: str) -> None:
    """Show ``message`` as a success line on the next run (after ``st.rerun``)."""
    st.session_state["admin_flash"] = message


def single_user_note(actor: Actor) -> None:
    """In single-user mode (no admin account yet): what creating the first admin does."""
    if actor.name:
        return
    st.info("Single-user mode: this workspace has no active admin account, so nobody signs in and you act as "
            "the admin. Creating the first **admin** account turns sign-in on: right after, every visitor — "
            "you included — has to sign in, so note the name and password. Reviewer accounts alone do not "
            "turn sign-in on.")


def add_account(actor: Actor) -> None:
    """The add-account form (name, role, password)."""
    with st.form("add-account", clear_on_submit=True):
        st.markdown("**Add an account**")
        name = st.text_input("Name", max_chars=100, key="new_name")
        role = st.selectbox("Role", accounts.ROLES, index=accounts.ROLES.index("reviewer"), key="new_role")
        password = st.text_input(f"Password (at least {accounts.MIN_PASSWORD} characters)", type="password",
                                 max_chars=accounts.MAX_PASSWORD, key="new_password")
        if not st.form_submit_button("Add account", type="primary"):
            return
    was_single_user = not accounts.login_enabled()
    accounts.add_user(name, role, password, actor=actor)
    if was_single_user and accounts.login_enabled():
        st.success(f"Admin {name.strip()!r} created: sign-in is on now. Sign in as {name.strip()!r} to go on.")
        st.button("Go to sign-in", key="to-sign-in")  # any rerun shows the sign-in page now
        st.stop()
    _flash(f"Account {name.strip()!r} ({role}) added.")
    st.rerun()


def manage_account(actor: Actor, users: pd.DataFrame) -> None:
    """Disable / enable an account and reset its password."""
    name = st.selectbox("Account", users["name"].tolist(), key="manage_name")
    row = users.set_index("name").loc[name]
    left, right = st.columns(2)
    with left:
        if bool(row["disabled"]):
            if st.button(f"Enable {name}", key="enable"):
                accounts.set_disabled(name, False, actor=actor)
                _flash(f"Account {name!r} enabled.")
                st.rerun()
        else:
            if name == actor.name:
                st.caption("Disabling your own account signs you out at once.")
            if st.button(f"Disable {name}", key="disable"):
                accounts.set_disabled(name, True, actor=actor)
                _flash(f"Account {name!r} disabled; its sessions ended.")
                st.rerun()
    with right, st.form("reset-password", clear_on_submit=True):
        password = st.text_input(f"New password for {name}", type="password", max_chars=accounts.MAX_PASSWORD,
                                 key="reset_password")
        if st.form_submit_button("Reset password"):
            accounts.reset_password(name, password, actor=actor)
            _flash(f"Password of {name!r} reset; its sessions ended.")
            st.rerun()


def accounts_tab(actor: Actor) -> None:
    single_user_note(actor)
    users = accounts.list_users()
    st.dataframe(users, hide_index=True, width="stretch")
    with user_errors():
        add_account(actor)
    if not users.empty:
        st.markdown("**Disable, enable or reset an account**")
        with user_errors():
            manage_account(actor, users)


# ------------------------------------------------------------------------------------------ studies
def _checkpoint_label(row: pd.Series) -> str:
    return f"#{row['id']} {row['name']} · {row['arch']} · {row['pretrain']} · {row['degree']} · {row['phase']}"


def supported_methods(archs: list[str]) -> list[str]:
    """Registered methods that run on every architecture in ``archs``."""
    caps = [capabilities(arch) for arch in dict.fromkeys(archs)]
    return [m for m in list_methods() if all(c.get(m) is True for c in caps)]


def create_study_form(actor: Actor) -> None:
    """Pick checkpoints, methods, samples, settings and reviewers; create the study."""
    table = checkpoint_table()
    table = table[table["dataset"].notna()] if not table.empty else table
    if table.empty:
        st.info("No checkpoint trained on a dataset yet: train one (`xaudit train …`) to build a study from.")
        return
    rows = table.set_index("id", drop=False)
    picked = st.multiselect("Checkpoints", rows.index.tolist(), key="study_checkpoints",
                            format_func=lambda i: _checkpoint_label(rows.loc[i]))
    chosen = rows.loc[picked]
    methods = supported_methods(chosen["arch"].tolist()) if picked else []
    st.multiselect("Attribution methods", methods, key="study_methods",
                   format_func=lambda m: f"{m} — {get_method(m).title}",
                   help="Only the methods every chosen checkpoint's architecture supports; maps not stored "
                        "yet are computed when a reviewer opens the case.")
    mode = st.radio("Samples", ("A random N of the correctly classified test samples", "Chosen test samples"),
                    key="study_sample_mode", horizontal=True)
    if mode.startswith("Chosen"):
        datasets = chosen["dataset"].unique().tolist()
        options = sample_index(datasets[0], "test") if len(datasets) == 1 else []
        if len(datasets) > 1:
            st.caption("The chosen checkpoints are trained on different datasets; a study uses one.")
        labels = {pk: f"{sid} (label {label})" for pk, sid, label, _ in options}
        st.multiselect("Test samples", list(labels), key="study_samples", format_func=lambda pk: labels[pk])
    else:
        st.number_input("N", min_value=1, value=10, step=1, key="study_n_random")
    left, mid, right = st.columns(3)
    left.number_input("Catch trials (random and edge maps)", min_value=0, value=2, step=1, key="study_catch")
    mid.number_input("Cases per reviewer (0 = all the design gives)", min_value=0, value=0, step=1,
                     key="study_cases_per_reviewer")
    right.number_input("Readers per case", min_value=1, value=2, step=1, key="study_readers")
    users = accounts.list_users()
    active = users[(users["role"] == "reviewer") & ~users["disabled"].astype(bool)]["name"].tolist()
    st.multiselect("Reviewers", active, key="study_reviewers")
    left, right = st.columns(2)
    left.checkbox("Show the lesion contour to reviewers", key="study_contour")
    right.number_input("Seed", min_value=0, value=0, step=1, key="study_seed")
    st.text_input("Study name", max_chars=200, key="study_name")
    if st.button("Create study", type="primary", key="create_study"):
        spec = study_spec(mode.startswith("Chosen"))
        created = studies.create_study(spec, actor=actor)
        _flash(f"Study {created['study']!r} created: {created['cases']} cases, {created['reviewers']} reviewers, "
               f"{created['assignments']} assignments.")
        st.rerun()


def study_spec(chosen_samples: bool) -> studies.StudySpec:
    """The :class:`~xai_core.review.studies.StudySpec` of the form's widgets."""
    state = st.session_state
    per_reviewer = int(state.get("study_cases_per_reviewer") or 0)
    return studies.StudySpec(
        name=state.get("study_name") or "",
        checkpoints=tuple(int(i) for i in state.get("study_checkpoints") or ()),
        methods=tuple(state.get("study_methods") or ()),
        reviewers=tuple(state.get("study_reviewers") or ()),
        samples=tuple(int(pk) for pk in state.get("study_samples") or ()) if chosen_samples else (),
        n_random=None if chosen_samples else int(state.get("study_n_random") or 0),
        show_contour=bool(state.get("study_contour")),
        catch_trials=int(state.get("study_catch") or 0),
        cases_per_reviewer=per_reviewer or None,
        readers_per_case=int(state.get("study_readers") or 2),
        seed=int(state.get("study_seed") or 0),
    )


def unblinding(actor: Actor, study: str) -> None:
    """The study's unblinding key, fetched once a session on request (each fetch is logged)."""
    key = f"unblinded:{actor.name}:{study}"
    if key not in st.session_state:
        if not st.button("Show the unblinding key (logged)", key=f"unblind-{study}"):
            return
        st.session_state[key] = studies.unblinding_key(study, actor=actor)
    frame = st.session_state[key]
    shown = frame.assign(params=[json.dumps(p, sort_keys=True) for p in frame["params"]])
    st.dataframe(shown, hide_index=True, width="stretch")
    st.download_button("Download the key (CSV)", shown.to_csv(index=False), file_name=f"{study}-unblinding-key.csv",
                       mime="text/csv", key=f"unblind-csv-{study}")


def study_list(actor: Actor) -> None:
    """Every study; per reviewer progress, close/reopen and the unblinding key of one."""
    listing = studies.list_studies()
    if listing.empty:
        st.info("No study yet: create one below.")
        return
    st.dataframe(listing, hide_index=True, width="stretch")
    study = st.selectbox("Study", listing["study"].tolist(), key="admin_study")
    status = listing.set_index("study").loc[study, "status"]
    st.caption(f"Progress per reviewer of {study!r} ({status})")
    st.dataframe(studies.study_status(study), hide_index=True, width="stretch")
    with user_errors():
        target = "closed" if status == "open" else "open"
        if st.button("Close the study (no more ratings)" if target == "closed" else "Reopen the study",
                     key="study_toggle"):
            studies.set_study_status(study, target, actor=actor)
            _flash(f"Study {study!r} {'closed' if target == 'closed' else 'reopened'}.")
            st.rerun()
    with st.expander("Unblinding key (admins only)"), user_errors():
        unblinding(actor, study)


def studies_tab(actor: Actor) -> None:
    st.subheader("Studies")
    with user_errors():
        study_list(actor)
    st.subheader("Create a study")
    with user_errors():
        create_study_form(actor)


# ---------------------------------------------------------------------------------------- audit log
def audit_tab() -> None:
    """The newest events, filtered by action and actor."""
    actions, actors = audit.audit_facets()
    left, mid, right = st.columns([2, 2, 1])
    action = left.selectbox("Action", [ALL, *actions], key="audit_action")
    who = mid.selectbox("Actor", [ALL, *actors], key="audit_actor", format_func=lambda a: a or "(local user)")
    limit = right.number_input("Newest", min_value=10, max_value=100_000, value=500, step=100, key="audit_limit")
    frame = audit.audit_frame(int(limit), None if action == ALL else action, None if who == ALL else who)
    frame = frame.assign(actor=frame["actor"].replace("", "(local user)"),
                         detail=[json.dumps(d, sort_keys=True, default=str) for d in frame["detail"]])
    st.caption(f"{len(frame)} events, newest first")
    st.dataframe(frame, hide_index=True, width="stretch")


with user_errors():
    actor = acting()
    st.title("Admin")
    st.caption("Accounts, blinded reading studies and the audit log.")
    accounts.require_admin(actor, "the Admin page")
    flash = st.session_state.pop("admin_flash", None)
    if flash:
        st.success(flash)
    tabs = lazy_tabs(TABS, "admin_view")
    if tabs["Accounts"].open:
        with tabs["Accounts"]:
            accounts_tab(actor)
    if tabs["Studies"].open:
        with tabs["Studies"]:
            studies_tab(actor)
    if tabs["Audit log"].open:
        with tabs["Audit log"]:
            audit_tab()
