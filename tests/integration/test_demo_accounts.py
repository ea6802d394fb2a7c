"""The demo's accounts and reader study, on SQLite and PostgreSQL: random passwords that work, kept
in a 0600 file until changed, printed once by ``xaudit demo``; passwords marked as made at image
build replaced once (all or none, the old ones refused, their sessions ended); the review stage's
study over stored maps of correctly classified samples, skipped when it exists."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from tests.review_seed import PASSWORD, ReviewWorkspace, seed_review_workspace
from xai_core import demo
from xai_core.cli.demo import announce_accounts
from xai_core.errors import AuthError
from xai_core.review import accounts, studies
from xai_core.review.accounts import LOCAL
from xai_core.review.audit import audit_frame
from xai_core.review.demo_accounts import credentials_path, image_mark_path, mark_image_build, read_demo_accounts


def test_demo_accounts_are_made_once_kept_0600_and_forgotten_when_changed(workspace: Path, capsys) -> None:
    assert not accounts.login_enabled()
    created = demo.ensure_demo_accounts()
    assert [(a.name, a.role) for a in created] == list(demo.ACCOUNTS)
    assert len({a.password for a in created}) == 3 and all(len(a.password) >= accounts.MIN_PASSWORD for a in created)
    for account in created:  # every kept password signs in
        assert accounts.session_actor(accounts.authenticate(account.name, account.password)).role == account.role
    assert accounts.login_enabled()  # the demo admin turns sign-in on
    path = credentials_path()
    assert path == workspace / "review" / "demo-accounts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_demo_accounts() == created

    announce_accounts(created)
    out = capsys.readouterr().out
    assert all(f"{a.name:<12} {a.role:<9} {a.password}" in out for a in created)
    assert demo.ensure_demo_accounts() == []  # a rerun makes nothing and keeps the passwords
    assert read_demo_accounts() == created
    announce_accounts([])
    again = capsys.readouterr().out
    assert again == ("demo accounts exist: demo-admin (admin), reader-1 (reviewer), reader-2 (reviewer); an admin "
                     f"sees their passwords on the Overview page (kept in {path} until changed)\n")
    assert not any(a.password in again for a in created)

    accounts.add_user("someone", "reviewer", "another password")
    accounts.reset_password("someone", "changed password")  # not a demo account: the file is untouched
    assert read_demo_accounts() == created
    accounts.reset_password("reader-1", "my own password!", actor=accounts.session_actor(
        accounts.authenticate("reader-1", created[1].password)))
    assert [a.name for a in read_demo_accounts()] == ["demo-admin", "reader-2"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(AuthError):
        accounts.authenticate("reader-1", created[1].password)


def test_only_missing_demo_accounts_are_made(workspace: Path) -> None:
    accounts.add_user("reader-2", "reviewer", PASSWORD)  # someone made this name before the demo did
    created = demo.ensure_demo_accounts()
    assert [a.name for a in created] == ["demo-admin", "reader-1"]
    assert [a.name for a in read_demo_accounts()] == ["demo-admin", "reader-1"]
    accounts.authenticate("reader-2", PASSWORD)  # its password was not replaced


def _hash(name: str) -> str:
    """The stored password hash of account ``name``."""
    from db import User, session_scope
    from sqlalchemy import select

    with session_scope() as session:
        return str(session.scalar(select(User.password_hash).where(User.name == name)))


def test_image_build_passwords_are_replaced_once(workspace: Path, capsys) -> None:
    built = demo.ensure_demo_accounts()
    assert demo.replace_image_build_passwords() == []  # no mark (`make demo`, no image): nothing changes
    assert read_demo_accounts() == built
    mark = mark_image_build()
    assert mark == image_mark_path() == workspace / "review" / "demo-accounts.image-build"
    admin, reader1, reader2 = built
    tokens = {a.name: accounts.authenticate(a.name, a.password) for a in (admin, reader2)}
    accounts.reset_password("reader-1", "my own password!", actor=accounts.session_actor(
        accounts.authenticate("reader-1", reader1.password)))  # changed: no longer kept, left alone
    reader1_token = accounts.authenticate("reader-1", "my own password!")
    accounts.add_user("someone", "reviewer", PASSWORD)
    other_token = accounts.authenticate("someone", PASSWORD)
    before = {name: _hash(name) for name in ("demo-admin", "reader-1", "reader-2", "someone")}

    new = demo.replace_image_build_passwords()
    assert [(a.name, a.role) for a in new] == [("demo-admin", "admin"), ("reader-2", "reviewer")]
    assert not {a.password for a in new} & {a.password for a in built}
    assert all(len(a.password) >= accounts.MIN_PASSWORD for a in new) and new[0].password != new[1].password
    assert read_demo_accounts() == new and not mark.exists()
    assert stat.S_IMODE(credentials_path().stat().st_mode) == 0o600
    for old, account in zip((admin, reader2), new):
        assert _hash(account.name) != before[account.name]  # the image's hash is gone
        assert accounts.session_actor(tokens[account.name]) is None  # sessions opened with it ended
        with pytest.raises(AuthError):
            accounts.authenticate(account.name, old.password)
        assert accounts.session_actor(accounts.authenticate(account.name, account.password)).role == account.role
    assert _hash("reader-1") == before["reader-1"] and _hash("someone") == before["someone"]
    assert accounts.session_actor(reader1_token).name == "reader-1"
    assert accounts.session_actor(other_token).name == "someone"
    events = audit_frame(action="user.reset-password")
    assert sorted(events.loc[events.detail.map(lambda d: (d or {}).get("reason") == "made at image build"), "target"]) == [
        "demo-admin", "reader-2"]

    assert demo.replace_image_build_passwords() == []  # a second start: nothing to replace
    assert read_demo_accounts() == new and _hash("demo-admin") != before["demo-admin"]
    announce_accounts(new)
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert printed == [[a.name, a.role, a.password] for a in read_demo_accounts()]


def test_a_failed_replacement_keeps_the_old_passwords_and_the_mark(workspace: Path, monkeypatch) -> None:
    built = demo.ensure_demo_accounts()
    mark_image_build()
    revoked: list[int] = []
    real_revoke = accounts._revoke_all

    def fail_on_second(session, user_id: int) -> None:  # the second account, inside the transaction
        revoked.append(user_id)
        if len(revoked) == 2:
            raise OSError("disk full")
        real_revoke(session, user_id)

    before = {a.name: _hash(a.name) for a in built}
    monkeypatch.setattr(accounts, "_revoke_all", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        demo.replace_image_build_passwords()
    monkeypatch.setattr(accounts, "_revoke_all", real_revoke)
    assert len(revoked) == 2  # the first account's hash was replaced, then rolled back with the rest
    assert {a.name: _hash(a.name) for a in built} == before
    assert read_demo_accounts() == built and image_mark_path().exists()  # the old state, still marked
    for account in built:
        accounts.authenticate(account.name, account.password)

    new = demo.replace_image_build_passwords()  # the next start replaces them
    assert [a.name for a in new] == [a.name for a in built] and read_demo_accounts() == new
    assert not image_mark_path().exists()
    for old, account in zip(built, new):
        accounts.authenticate(account.name, account.password)
        with pytest.raises(AuthError):
            accounts.authenticate(old.name, old.password)


@pytest.fixture
def seeded(workspace: Path) -> ReviewWorkspace:
    """The review fixture: TL (degree tl) and FT (degree all) of one source, saliency and gradcam
    maps of every test sample, the TL model wrong on the first two."""
    return seed_review_workspace()


def quick(ws: ReviewWorkspace) -> demo.DemoSettings:
    """The quick demo settings with the review fixture's dataset as the MRI study's."""
    return replace(demo.quick_settings(), dataset=ws.dataset)


def test_review_stage_makes_a_ready_study_of_correct_samples(seeded: ReviewWorkspace) -> None:
    summary = demo.stage_review(quick(seeded), lambda *a: None)
    # 3 samples × 2 methods × 2 checkpoints + 2 catch trials, read by both demo reviewers
    assert summary == ("demo-study: 14 cases for reader-1 and reader-2 (3 samples × 2 methods × 2 checkpoints "
                       "+ 2 catch; the samples are classified correctly by all 2 checkpoints)")
    key = studies.unblinding_key(demo.STUDY, actor=LOCAL)
    samples = set(key.sample_pk)
    assert len(samples) == 3 and not samples & {int(p) for p in seeded.test_pks[:2]}  # TL misclassifies those
    assert set(key.method) == {"saliency", "gradcam", "baseline_random", "baseline_sobel"}
    assert set(key.checkpoint_id) == set(seeded.checkpoints)
    status = studies.study_status(demo.STUDY)
    assert list(status.reviewer) == ["reader-1", "reader-2"] and list(status.assigned) == [14, 14]
    assert demo.stage_review(quick(seeded), lambda *a: None) == "already created"
    assert len(studies.list_studies()) == 1


def test_review_stage_falls_back_to_the_best_classified_samples(seeded: ReviewWorkspace) -> None:
    from db import Prediction, session_scope
    from sqlalchemy import update

    tl, ft = seeded.checkpoints
    both = int(seeded.test_pks[2])
    with session_scope() as session:  # FT now gets every test sample wrong but the first and the third
        session.execute(update(Prediction).where(Prediction.checkpoint_id == ft,
                                                 Prediction.sample_pk.not_in([int(seeded.test_pks[0]), both]))
                        .values(correct=False))
    summary = demo.stage_review(quick(seeded), lambda *a: None)
    # only the third sample is right for both; TL is wrong on the first two: every other one is right for one
    assert summary.endswith("the samples are classified correctly by 2, 1 and 1 of the 2 checkpoints)")
    samples = set(studies.unblinding_key(demo.STUDY, actor=LOCAL).sample_pk)
    assert both in samples and int(seeded.test_pks[1]) not in samples  # right for none: never drawn
