"""Review studies through the core API (no Streamlit), on SQLite and PostgreSQL: accounts and
logins, study creation and blinding, ratings, and the attacks the issue lists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.review_seed import ADMIN, METHODS, PASSWORD, REVIEWERS, ReviewWorkspace, seed_review_workspace
from xai_core.errors import AccessDenied, AuthError, ConfigError, InvalidValueError, UnknownNameError
from xai_core.review import accounts, reading, studies
from xai_core.review.accounts import LOCAL, Actor
from xai_core.review.audit import audit_frame


@pytest.fixture
def ws(workspace: Path) -> ReviewWorkspace:
    return seed_review_workspace()


def _spec(ws: ReviewWorkspace, **kw) -> studies.StudySpec:
    base = dict(name="s1", checkpoints=ws.checkpoints, methods=METHODS, reviewers=REVIEWERS,
                samples=tuple(int(p) for p in ws.test_pks[2:6]), catch_trials=2, show_contour=True)
    return studies.StudySpec(**{**base, **kw})


def _admin() -> Actor:
    return accounts.session_actor(accounts.authenticate(ADMIN, PASSWORD))


def test_login_logout_and_replayed_token(ws: ReviewWorkspace) -> None:
    assert accounts.login_enabled()
    token = accounts.authenticate("rex", PASSWORD)
    actor = accounts.session_actor(token)
    assert (actor.name, actor.role, actor.is_admin) == ("rex", "reviewer", False)
    accounts.logout(token)
    assert accounts.session_actor(token) is None  # replayed after logout
    assert accounts.session_actor("made-up-token") is None
    log = audit_frame()
    assert {("login", "ok"), ("logout", "ok"), ("session", "refused")} <= set(zip(log.action, log.outcome))


def test_wrong_password_unknown_and_disabled_accounts(ws: ReviewWorkspace) -> None:
    with pytest.raises(AuthError, match="wrong name or password"):
        accounts.authenticate("rex", "not the password")
    with pytest.raises(AuthError, match="wrong name or password"):  # same message: names are not revealed
        accounts.authenticate("nobody", PASSWORD)
    token = accounts.authenticate("rae", PASSWORD)
    accounts.set_disabled("rae")
    assert accounts.session_actor(token) is None  # disabling ends the open session
    with pytest.raises(AuthError, match="disabled"):
        accounts.authenticate("rae", PASSWORD)
    assert "rae" in set(audit_frame(action="login").query("outcome == 'failed'").actor)


def test_failed_logins_are_throttled_with_a_growing_delay(ws: ReviewWorkspace) -> None:
    assert [accounts.delay_after(n) for n in range(1, 7)] == [0, 0, 1, 2, 4, 8]
    assert accounts.delay_after(100) == accounts.MAX_DELAY_S
    for _ in range(accounts.FREE_TRIES):
        with pytest.raises(AuthError, match="wrong"):
            accounts.authenticate("roy", "bad password")
    with pytest.raises(AuthError, match="too many failed logins"):
        accounts.authenticate("roy", PASSWORD)  # even the right password waits out the delay
    assert 0 < accounts.blocked_for("roy") <= 1.0
    failed = audit_frame(action="login").query("actor == 'roy' and outcome == 'failed'")
    assert sorted(d["failures"] for d in failed.detail) == [1, 2, 3]
    assert "throttled" in audit_frame(action="login").query("outcome == 'refused'").detail.iloc[0]["reason"]


def test_passwords_are_stored_only_as_argon2_hashes(ws: ReviewWorkspace) -> None:
    from sqlalchemy import select

    from db import User, session_scope

    with session_scope() as session:
        hashes = session.scalars(select(User.password_hash)).all()
    assert len(hashes) == 4 and all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    assert len(set(hashes)) == 4  # salted: the same password hashes differently
    assert "password_hash" not in accounts.list_users().columns


def test_reviewers_cannot_manage_accounts(ws: ReviewWorkspace) -> None:
    rex = accounts.session_actor(accounts.authenticate("rex", PASSWORD))
    with pytest.raises(AccessDenied, match="admins only"):
        accounts.add_user("mallory", "admin", "12345678", actor=rex)
    accounts.reset_password("rex", "a new password!", actor=rex)  # one's own password is fine
    with pytest.raises(AccessDenied):
        accounts.reset_password("rae", "a new password!", actor=rex)
    with pytest.raises(ConfigError, match="exists"):
        accounts.add_user("rex", "reviewer", PASSWORD)
    with pytest.raises(ConfigError, match="role"):
        accounts.add_user("zed", "root", PASSWORD)
    with pytest.raises(ConfigError, match="password must be"):
        accounts.add_user("zed", "reviewer", "short")


def test_study_design_is_balanced_blinded_and_overlapping(ws: ReviewWorkspace) -> None:
    created = studies.create_study(_spec(ws), actor=_admin())
    assert created == {"study": "s1", "cases": 2 * 2 * 4 + 2, "reviewers": 3, "assignments": 36}
    key = studies.unblinding_key("s1", actor=LOCAL)
    assert len(key) == 18 and key.is_catch.sum() == 2
    assert set(key.loc[key.is_catch, "method"]) == {"baseline_random", "baseline_sobel"}
    queues = {r: reading.queue("s1", r) for r in REVIEWERS}
    assert sorted(len(q) for q in queues.values()) == [12, 12, 12]
    readers = Counter(k for q in queues.values() for _, k, _ in q)
    assert set(readers.values()) == {2} and set(readers) == set(key.case_key)  # every case read twice
    assert [k for _, k, _ in queues["rex"]] != sorted(k for _, k, _ in queues["rex"])  # opaque, shuffled
    view = reading.next_case("s1", "rex")
    assert not hasattr(view, "method") and not hasattr(view, "checkpoint_id")
    assert view.image.shape == view.heatmap.shape == (32, 32) and view.lesion is not None
    assert (view.position, view.total, view.rated, view.rating) == (0, 12, 0, None)


def test_random_correct_samples_and_cases_per_reviewer(ws: ReviewWorkspace) -> None:
    created = studies.create_study(_spec(ws, samples=(), n_random=5, catch_trials=0, cases_per_reviewer=4,
                                         name="r"), actor=LOCAL)
    assert created["cases"] == 4 * 3 // 2
    key = studies.unblinding_key("r", actor=LOCAL)
    assert not set(key.sample_pk) & {int(ws.test_pks[0]), int(ws.test_pks[1])}  # misclassified by TL
    with pytest.raises(ConfigError, match="only 10 test samples"):
        studies.create_study(_spec(ws, name="r2", samples=(), n_random=99), actor=LOCAL)


def test_bad_studies_fail_at_creation(ws: ReviewWorkspace) -> None:
    with pytest.raises(UnknownNameError, match="no registered checkpoint"):
        studies.create_study(_spec(ws, checkpoints=(ws.checkpoints[0], 999)), actor=LOCAL)
    with pytest.raises(UnknownNameError, match="not_a_method"):
        studies.create_study(_spec(ws, methods=("not_a_method",)), actor=LOCAL)
    with pytest.raises(ConfigError, match="not an active reviewer"):
        studies.create_study(_spec(ws, reviewers=("rex", ADMIN)), actor=LOCAL)
    with pytest.raises(ConfigError, match="read by 3 reviewers"):
        studies.create_study(_spec(ws, readers_per_case=3, reviewers=("rex", "rae")), actor=LOCAL)
    rex = accounts.session_actor(accounts.authenticate("rex", PASSWORD))
    with pytest.raises(AccessDenied):
        studies.create_study(_spec(ws), actor=rex)
    assert studies.list_studies().empty  # nothing half-written


def test_ratings_are_validated_stored_verbatim_and_never_duplicated(ws: ReviewWorkspace) -> None:
    studies.create_study(_spec(ws), actor=LOCAL)
    key = reading.next_case("s1", "rex").case_key
    for bad, match in [(0, "1-5"), (6, "1-5"), (True, "1-5"), ("4", "1-5"), (2.5, "1-5")]:
        with pytest.raises(InvalidValueError, match=match):
            reading.submit_rating("s1", "rex", key, bad, True)
    with pytest.raises(InvalidValueError, match="yes or no"):
        reading.submit_rating("s1", "rex", key, 3, "yes")
    with pytest.raises(InvalidValueError, match="limit is 2000"):
        reading.submit_rating("s1", "rex", key, 3, True, note="x" * 2001)
    for point in [(32, 3), (-1, 3), (float("nan"), 1)]:
        with pytest.raises(InvalidValueError, match="outside the 32×32 image"):
            reading.submit_rating("s1", "rex", key, 3, True, point=point)
    note = "'); DROP TABLE review_ratings; -- <script>alert(1)</script>"
    for _ in range(3):  # a double click and a retry
        reading.submit_rating("s1", "rex", key, 4, True, note=note, point=(3.5, 7.0))
    reading.submit_rating("s1", "rex", key, 2, False, note=note, point=(31.9, 0))  # changed before submitting
    mine = reading.my_ratings("s1", "rex", owner="rex")
    assert len(mine) == 1
    assert (mine[0]["evidence_match"], mine[0]["plausible"], mine[0]["note"], mine[0]["point_x"]) == (2, False, note, 31.9)
    view = reading.case_view("s1", "rex", key)
    assert view.rating == reading.Rating(2, False, note, (31.9, 0.0)) and view.rated == 1


def test_foreign_case_keys_ratings_and_the_key_are_refused_and_logged(ws: ReviewWorkspace) -> None:
    studies.create_study(_spec(ws), actor=LOCAL)
    mine = {k for _, k, _ in reading.queue("s1", "rex")}
    foreign = next(k for _, k, _ in reading.queue("s1", "rae") if k not in mine)
    with pytest.raises(AccessDenied, match="not in your queue"):
        reading.case_view("s1", "rex", foreign)
    with pytest.raises(AccessDenied, match="not in your queue"):
        reading.submit_rating("s1", "rex", foreign, 5, True)
    with pytest.raises(AccessDenied, match="only see your own"):
        reading.my_ratings("s1", "rae", owner="rex")
    rex = accounts.session_actor(accounts.authenticate("rex", PASSWORD))
    with pytest.raises(AccessDenied, match="admins only"):
        studies.unblinding_key("s1", actor=rex)
    refused = audit_frame().query("outcome == 'refused'")
    assert Counter(refused.action) == Counter({"case.view": 1, "rating": 1, "ratings.view": 1, "access": 1})
    assert set(refused.actor) == {"rex"}
    assert reading.my_ratings("s1", "rae", owner="rae") == []  # the refused rating wrote nothing


def test_submitting_the_study_makes_ratings_final(ws: ReviewWorkspace) -> None:
    studies.create_study(_spec(ws, name="s2", catch_trials=0, samples=(int(ws.test_pks[3]),)), actor=LOCAL)
    queue = reading.queue("s2", "rex")
    with pytest.raises(InvalidValueError, match="not rated yet"):
        reading.submit_study("s2", "rex")
    for _, key, _ in queue:
        reading.submit_rating("s2", "rex", key, 3, True)
    assert reading.next_case("s2", "rex") is None
    assert reading.submit_study("s2", "rex") == len(queue)
    with pytest.raises(AccessDenied, match="final"):
        reading.submit_rating("s2", "rex", queue[0][1], 5, True)
    status = studies.study_status("s2").set_index("reviewer")
    assert status.loc["rex", "rated"] == len(queue) and status.loc["rex", "submitted_at"] is not None
    studies.set_study_status("s2", "closed", actor=LOCAL)
    other = reading.queue("s2", "rae")[0][1]
    with pytest.raises(AccessDenied, match="closed"):
        reading.submit_rating("s2", "rae", other, 3, True)


def test_catch_trial_maps_are_the_chance_maps(ws: ReviewWorkspace) -> None:
    from xai_core.metrics.chance_maps import random_maps

    studies.create_study(_spec(ws), actor=LOCAL)
    key = studies.unblinding_key("s1", actor=LOCAL)
    catch = key[key.method == "baseline_random"].iloc[0]
    reader = next(r for r in REVIEWERS if catch.case_key in {k for _, k, _ in reading.queue("s1", r)})
    view = reading.case_view("s1", reader, catch.case_key)
    expected = random_maps(np.array([catch.sample_pk]), 32, 32, seed=0)[0]
    assert np.corrcoef(view.heatmap.ravel(), expected.ravel())[0, 1] > 0.99


def test_rated_checkpoints_and_datasets_are_not_replaced(ws: ReviewWorkspace) -> None:
    import models
    from xai_core.config import workspace_dir
    from xai_core.data.dataset import ensure_new
    from xai_core.errors import CheckpointError, WorkspaceError

    studies.create_study(_spec(ws), actor=LOCAL)
    with pytest.raises(WorkspaceError, match="review study"):
        ensure_new("rv", overwrite=True)
    net = models.build("vgg16", num_classes=2, width=0.125)
    with pytest.raises(CheckpointError, match="review study"):
        models.save_checkpoint(net, name="rv-tl", arch="vgg16", width=0.125, num_classes=2, in_chans=1,
                               input_size=32, pretrain="natural", degree="tl", phase="tl", replace=True)
    assert len(studies.unblinding_key("s1", actor=LOCAL)) == 18
    assert not (workspace_dir("checkpoints") / "rv-tl.safetensors").exists()  # the seeded row's file was not written
