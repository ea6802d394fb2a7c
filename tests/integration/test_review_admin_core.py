"""What the Admin page needs from the review core (SQLite and PostgreSQL): the audit log filtered
by actor and its filter choices; the last active admin cannot be disabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.review_seed import ADMIN, PASSWORD, REVIEWERS, seed_review_workspace
from xai_core.errors import AuthError, ConfigError
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
