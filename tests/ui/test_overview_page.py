"""AppTest of the Overview page: findings as cards with verdict badges, the build table without None."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.seed import add_precision_grid
from xai_core.status import BuildStatus, StageStatus, write_status

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")  # the Overview is its default page


def _seed_opposite() -> None:
    """natural above mri at tl (the issue's demo case: 0.245 vs 0.221), both models working."""
    add_precision_grid(lambda s, d: 0.245 if s == "natural" else 0.221, {"saliency": 0.0, "input_x_gradient": 0.0},
                       ("tl",), n_images=30, accuracy=lambda s, d: 1.0, image_sd=0.02, noise_sd=0.0)


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_findings_are_cards_with_verdict_badges(workspace: Path) -> None:
    st.cache_data.clear()
    _seed_opposite()
    write_status(BuildStatus("quick", {}, [StageStatus("data", "Benchmark data", "done", seconds=2.5),
                                           StageStatus("train", "Fine-tuning grid", "pending")]))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    build = at.table[0].value
    assert list(build.index) == ["Benchmark data", "Fine-tuning grid"] and list(build["state"]) == ["done", "pending"]
    assert list(build["seconds"]) == ["2.5", "—"]  # a stage without a time shows a dash, not None
    text = _markdown(at)
    # the pre-training finding says the opposite direction, in a red badge, with its evidence
    assert ":red-badge[:material/swap_vert: not reproduced \\(opposite direction\\)]" in text
    assert ":gray-badge[:material/block: not testable here]" in text and ":gray[Oliveira et al\\. 2024 \\(MRI\\)]" in text
    assert "**Claim:** At low fine\\-tuning degrees" in text
    assert "natural higher \\(opposite\\)" in text
    assert "mri 0\\.221 \\[" in text and "natural 0\\.245 \\[" in text
    assert "None" not in text
    # findings are not in a table (whose cells cut the verdict off); small tables are static, no data grid
    assert len(at.table) == 2 and not at.dataframe  # the build table and the workspace inventory only
    inventory = at.table[1].value
    assert list(inventory.index) == ["Datasets", "Checkpoints", "Attribution maps", "Ground-truth metrics",
                                     "TL→FT drift"]
    assert any("How this verdict is decided" in e.label for e in at.expander)


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_sign_in_mode_and_demo_passwords_for_admins_only(workspace: Path) -> None:
    from ui.auth import TOKEN
    from xai_core.demo import ensure_demo_accounts
    from xai_core.review import accounts

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert "Single-user mode: no sign-in" in _captions(at)
    assert not [e for e in at.expander if e.label.startswith("Demo accounts")]  # no accounts, nothing kept

    created = ensure_demo_accounts()
    accounts.add_user("ann", "admin", "ann's password")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[TOKEN] = accounts.authenticate("ann", "ann's password")
    at.run()
    assert not at.exception, at.exception
    assert "Sign-in mode with 4 active accounts (2 admin, 2 reviewer)." in _captions(at)
    shown = at.table[0].value
    assert list(shown.index) == [a.name for a in created]
    assert list(shown["password"]) == [a.password for a in created] and list(shown["role"]) == [a.role for a in created]
    assert "Change them before anyone else reaches this dashboard" in at.warning[0].value

    accounts.reset_password("reader-2", "a changed password")  # a changed password leaves the list
    accounts.set_disabled("ann")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[TOKEN] = accounts.authenticate("demo-admin", created[0].password)
    at.run()
    assert "Sign-in mode with 3 active accounts (1 admin, 2 reviewer)." in _captions(at)
    assert list(at.table[0].value.index) == ["demo-admin", "reader-1"]
    assert created[2].password not in at.table[0].value.to_string()


def test_the_newest_sweep_shows_its_stages_and_nodes(workspace: Path) -> None:
    from xai_core.sweep import STAGES, tracking

    run_id = tracking.start_run("tiny", "ray", {"data": {"tasks": 0, "skipped": 1}, "explain": {"tasks": 3, "skipped": 1},
                                                "beyond": {"tasks": 2, "skipped": 0}}, address="10.0.0.1:6379")
    tracking.queue_tasks(run_id, "explain", ["explain:a", "explain:b", "explain:c"])
    for key in ("explain:a", "explain:b"):
        tracking.mark_running(run_id, key)
    tracking.mark_done(run_id, "explain:a", 1.5, "4 maps")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any(s.value == "Sweep: tiny — running" for s in at.subheader)
    sweep = at.table[0].value
    assert sweep.loc["explain", ["planned", "skipped", "queued", "running", "done", "failed"]].tolist() == [3, 1, 1, 1, 1, 0]
    assert sweep.loc["data", "skipped"] == 1 and sweep.loc["explain", "nodes"] == tracking.node_name()
    assert list(sweep.index) == list(STAGES) and sweep.loc["beyond", "planned"] == 2  # every stage, beyond too
    assert "executor ray at 10.0.0.1:6379" in _captions(at)
