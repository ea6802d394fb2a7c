"""What the Admin page needs from the review core (SQLite and PostgreSQL): the audit log filtered
by actor and its filter choices; the last active admin cannot be disabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.review_seed import ADMIN, PASSWORD, REVIEWERS, seed_review_workspace
from xai_core.errors import AuthError, ConfigError, UnknownNameError
from xai_core.review import accounts
from xai_core.review.audit import audit_facets, audit_frame


def test_audit_log_filters_and_facets(workspace: Path) -> None:
    seed_review_workspace(n=20, size=16)
    with pytest.raises(AuthError):
        accounts.authenticate("roy", "wrong password")
    accounts.authenticate("rex", PASSWORD)
    assert audit_facets() == (["login", "user.add"], ["", "rex", "roy"])
    assert audit_frame(actor="").target.tolist() == [*reversed(REVIEWERS), ADMIN]  # newest first
    roy = audit_frame(actor="roy")
    assert (roy.action.tolist(), roy.outcome.tolist()) == (["login"], ["failed"])
    assert audit_frame(action="login", actor="rex").outcome.tolist() == ["ok"]
    assert audit_frame(action="user.add", actor="rex").empty
    assert len(audit_frame(limit=2)) == 2


def test_the_last_active_admin_cannot_be_disabled(workspace: Path) -> None:
    seed_review_workspace(n=20, size=16)
    with pytest.raises(ConfigError, match="last active admin"):
        accounts.set_disabled(ADMIN)
    assert accounts.login_enabled() and not accounts.list_users().set_index("name").loc[ADMIN, "disabled"]
    accounts.add_user("second", "admin", PASSWORD)
    accounts.set_disabled(ADMIN)  # another admin is active: fine
    with pytest.raises(ConfigError, match="'second' is the last active admin"):
        accounts.set_disabled("second")
    accounts.set_disabled(ADMIN)  # disabling a disabled admin again changes nothing and is allowed
    accounts.set_disabled(ADMIN, False)
    accounts.set_disabled("second")
    assert accounts.login_enabled()


def test_results_stamp_changes_with_every_rating_change(workspace: Path) -> None:
    from xai_core.review import reading, studies
    from xai_core.review.accounts import LOCAL

    ws = seed_review_workspace(n=20, size=16)
    studies.create_study(studies.StudySpec(name="s", checkpoints=ws.checkpoints, methods=("saliency",),
                                           reviewers=REVIEWERS[:2], samples=(int(ws.test_pks[0]),)), actor=LOCAL)
    empty = studies.results_stamp("s")
    assert empty == (0, 0, "", 0)
    (_, key, _), *rest = reading.queue("s", "rex")
    reading.submit_rating("s", "rex", key, 3, True)
    first = studies.results_stamp("s")
    assert first[0] == 1 and first[1] > 0 and first[2] != "" and first[3] == 0
    reading.submit_rating("s", "rex", key, 4, True)  # changed: same row, new time
    changed = studies.results_stamp("s")
    assert changed[:2] == first[:2] and changed[2] != first[2]
    for _, other, _ in rest:
        reading.submit_rating("s", "rex", other, 2, False)
    reading.submit_study("s", "rex")
    assert studies.results_stamp("s")[3] == 1 + len(rest)
    with pytest.raises(UnknownNameError, match="no review study named 'nope'"):
        studies.results_stamp("nope")
