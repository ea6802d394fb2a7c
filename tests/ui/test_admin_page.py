"""AppTest of the Admin page on a review workspace (tests/review_seed.py): accounts, studies, the
unblinding key and the audit log, acting as the seeded admin or as the single-user local admin."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.review_seed import ADMIN, METHODS, PASSWORD, REVIEWERS, ReviewWorkspace, run_view, seed_review_workspace
from xai_core.errors import AuthError
from xai_core.review import accounts, studies
from xai_core.review.accounts import LOCAL, Actor
from xai_core.review.audit import audit_frame



@pytest.fixture
def ws(workspace: Path) -> ReviewWorkspace:
    return seed_review_workspace()


def admin_page(actor: Actor | None = None, view: str = "Accounts") -> AppTest:
    """The page run once as ``actor`` (the admin account by default) with the tab ``view`` open."""
    at = run_view("admin", actor, admin_view=view)
    assert not at.exception, at.exception
    return at


def test_lists_accounts_and_adds_one(ws: ReviewWorkspace) -> None:
    at = admin_page()
    users = at.dataframe[0].value
    assert users["name"].tolist() == [ADMIN, *REVIEWERS]
    assert users["role"].tolist() == ["admin", "reviewer", "reviewer", "reviewer"]
    assert "password_hash" not in users.columns
    assert not at.info  # sign-in is on: no single-user note
    at.text_input(key="new_name").set_value("rho")
    at.text_input(key="new_password").set_value("a long password")
    at.button(key="FormSubmitter:add-account-Add account").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Account 'rho' (reviewer) added."]
    assert at.dataframe[0].value["name"].tolist() == [ADMIN, *REVIEWERS, "rho"]
    assert accounts.session_actor(accounts.authenticate("rho", "a long password")).role == "reviewer"
    event = audit_frame(action="user.add").iloc[0]
    assert (event.actor, event.target, event.detail) == (ADMIN, "rho", {"role": "reviewer"})


def test_a_short_password_is_one_error_line(ws: ReviewWorkspace) -> None:
    at = admin_page()
    at.text_input(key="new_name").set_value("rho")
    at.text_input(key="new_password").set_value("short")
    at.button(key="FormSubmitter:add-account-Add account").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [f"password must be {accounts.MIN_PASSWORD}-{accounts.MAX_PASSWORD} characters"]
    assert "rho" not in accounts.list_users()["name"].tolist()


def test_disables_enables_and_resets_an_account(ws: ReviewWorkspace) -> None:
    token = accounts.authenticate("rex", PASSWORD)
    at = admin_page()
    at.selectbox(key="manage_name").set_value("rex").run()
    at.button(key="disable").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Account 'rex' disabled; its sessions ended."]
    users = at.dataframe[0].value.set_index("name")
    assert bool(users.loc["rex", "disabled"]) and not bool(users.loc["rae", "disabled"])
    assert accounts.session_actor(token) is None  # the open session ended
    with pytest.raises(AuthError, match="disabled"):
        accounts.authenticate("rex", PASSWORD)
    at.button(key="enable").click().run()
    assert not bool(at.dataframe[0].value.set_index("name").loc["rex", "disabled"])
    at.text_input(key="reset_password").set_value("another password")
    at.button(key="FormSubmitter:reset-password-Reset password").click().run()
    assert [s.value for s in at.success] == ["Password of 'rex' reset; its sessions ended."]
    assert accounts.session_actor(accounts.authenticate("rex", "another password")).name == "rex"
    log = audit_frame(actor=ADMIN)
    assert log["action"].tolist()[:3] == ["user.reset-password", "user.enable", "user.disable"]


def test_the_last_admin_cannot_be_disabled(ws: ReviewWorkspace) -> None:
    at = admin_page()
    at.selectbox(key="manage_name").set_value(ADMIN).run()
    at.button(key="disable").click().run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "last active admin" in at.error[0].value
    assert accounts.login_enabled()  # sign-in stays on


def test_single_user_mode_explains_that_the_first_admin_turns_sign_in_on(workspace: Path) -> None:
    at = admin_page(LOCAL)
    assert any("turns sign-in on" in i.value and "sign in" in i.value for i in at.info)
    assert at.dataframe[0].value.empty
    at.text_input(key="new_name").set_value("boss")
    at.selectbox(key="new_role").set_value("admin")
    at.text_input(key="new_password").set_value("boss password")
    at.button(key="FormSubmitter:add-account-Add account").click().run()
    assert not at.exception, at.exception
    assert accounts.login_enabled()
    assert [s.value for s in at.success] == ["Admin 'boss' created: sign-in is on now. Sign in as 'boss' to go on."]
    assert audit_frame(action="user.add").iloc[0].actor == ""  # the local user did it


def fill_study(at: AppTest, ws: ReviewWorkspace, name: str, readers: int, reviewers: list[str]) -> AppTest:
    """Fill the create-study widgets (chosen samples) and press Create."""
    at.multiselect(key="study_checkpoints").set_value(list(ws.checkpoints)).run()
    at.multiselect(key="study_methods").set_value(list(METHODS))
    at.radio(key="study_sample_mode").set_value("Chosen test samples").run()
    at.multiselect(key="study_samples").set_value([int(p) for p in ws.test_pks[2:6]])
    at.number_input(key="study_catch").set_value(2)
    at.number_input(key="study_readers").set_value(readers)
    at.multiselect(key="study_reviewers").set_value(reviewers)
    at.checkbox(key="study_contour").check()
    at.text_input(key="study_name").set_value(name)
    at.button(key="create_study").click().run()
    assert not at.exception, at.exception
    return at


def test_creates_a_study_through_the_form(ws: ReviewWorkspace) -> None:
    at = admin_page(view="Studies")
    assert any("No study yet" in i.value for i in at.info)
    methods = at.multiselect(key="study_methods")
    assert methods.options == []  # no checkpoint chosen yet
    reviewers = at.multiselect(key="study_reviewers").options
    assert reviewers == list(REVIEWERS)  # active reviewers only, not the admin
    fill_study(at, ws, "s1", 2, list(REVIEWERS))
    assert [s.value for s in at.success] == ["Study 's1' created: 18 cases, 3 reviewers, 36 assignments."]
    listing = at.dataframe[0].value
    assert listing[["study", "status", "cases", "reviewers", "assigned"]].values.tolist() == [["s1", "open", 18, 3, 36]]
    progress = at.dataframe[1].value
    assert progress["reviewer"].tolist() == sorted(REVIEWERS) and progress["assigned"].tolist() == [12, 12, 12]
    key = studies.unblinding_key("s1", actor=LOCAL)
    assert sorted(set(key["sample_pk"])) == [int(p) for p in ws.test_pks[2:6]]
    assert set(key.loc[~key["is_catch"], "method"]) == set(METHODS)


def test_the_method_menu_follows_the_architectures(ws: ReviewWorkspace) -> None:
    from xai_core.attribution import capabilities

    at = admin_page(view="Studies")
    at.multiselect(key="study_checkpoints").set_value([ws.checkpoints[0]]).run()
    offered = at.multiselect(key="study_methods").options
    expected = [m for m, ok in capabilities("vgg16").items() if ok is True]
    assert [o.split(" — ")[0] for o in offered] == expected and {"saliency", "gradcam"} <= set(expected)


def test_a_bad_study_is_one_error_line(ws: ReviewWorkspace) -> None:
    at = admin_page(view="Studies")
    fill_study(at, ws, "too-many-readers", 3, ["rex", "rae"])
    assert [e.value for e in at.error] == ["every case is read by 3 reviewers but the study names 2; add reviewers "
                                           "or lower readers per case"]
    assert studies.list_studies().empty


def test_close_reopen_and_unblinding_key(ws: ReviewWorkspace) -> None:
    studies.create_study(studies.StudySpec(name="s1", checkpoints=ws.checkpoints, methods=METHODS,
                                           reviewers=REVIEWERS, n_random=3, catch_trials=1), actor=LOCAL)
    at = admin_page(view="Studies")
    at.button(key="study_toggle").click().run()
    assert [s.value for s in at.success] == ["Study 's1' closed."]
    assert at.dataframe[0].value["status"].tolist() == ["closed"]
    at.button(key="study_toggle").click().run()
    assert at.dataframe[0].value["status"].tolist() == ["open"]
    assert audit_frame(action="study.unblind").empty  # nothing unblinded until asked
    at.button(key="unblind-s1").click().run()
    assert not at.exception, at.exception
    shown = at.dataframe[-1].value
    assert len(shown) == 2 * 2 * 3 + 1 and shown["is_catch"].sum() == 1
    assert set(shown["case_key"]) == set(studies.unblinding_key("s1", actor=LOCAL)["case_key"])
    assert at.get("download_button")
    at.run()  # kept for the session: a rerun does not fetch (and log) it again
    assert len(audit_frame(action="study.unblind").query(f"actor == '{ADMIN}'")) == 1


def test_audit_log_filters_by_action_and_actor(ws: ReviewWorkspace) -> None:
    with pytest.raises(AuthError):
        accounts.authenticate("roy", "wrong password")
    at = admin_page(view="Audit log")
    log = at.dataframe[0].value
    assert set(log["action"]) == {"user.add", "login"} and "(local user)" in set(log["actor"])
    at.selectbox(key="audit_action").set_value("login").run()
    assert set(at.dataframe[0].value["action"]) == {"login"}
    at.selectbox(key="audit_actor").set_value("roy").run()
    only = at.dataframe[0].value
    assert (len(only), only["outcome"].iloc[0]) == (1, "failed")
    assert '"reason": "wrong name or password"' in only["detail"].iloc[0]
