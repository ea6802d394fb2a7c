"""The demo's accounts and reader study, on SQLite and PostgreSQL: random passwords that work, kept
in a 0600 file until changed, printed once by ``xaudit demo``; the review stage's study over stored
maps of correctly classified samples, skipped when it exists."""

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
from xai_core.review.demo_accounts import credentials_path, read_demo_accounts


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
