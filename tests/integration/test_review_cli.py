"""``xaudit users`` and ``xaudit review`` through :func:`xai_core.cli.run`, on SQLite and PostgreSQL:
accounts with hidden prompts or ``--password-stdin``, study creation, progress, closing, export and
agreement; every bad input is one ``error:`` line, exit 2, and changes nothing."""

from __future__ import annotations

import getpass
import io
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.review_seed import METHODS, PASSWORD, REVIEWERS, ReviewWorkspace, seed_review_workspace
from xai_core.cli import run
from xai_core.errors import AuthError
from xai_core.review import accounts, reading, studies
from xai_core.review.accounts import LOCAL


@pytest.fixture
def ws(workspace: Path) -> ReviewWorkspace:
    return seed_review_workspace()


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the user types at hidden prompts, in order (a prompt left unanswered fails the test)."""
    answers: list[str] = []

    def prompt(_text: str) -> str:
        assert answers, "an unexpected password prompt"
        return answers.pop(0)

    monkeypatch.setattr(getpass, "getpass", prompt)  # what hidden prompts read with
    return answers


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str) -> str:
    """Run ``argv``, expect exit 2 and one ``error:`` line on stderr holding each of ``expected``."""
    capsys.readouterr()
    assert run(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(text in lines[0] for text in expected), lines[0]
    return lines[0]


def _names() -> list[str]:
    return list(accounts.list_users()["name"])


def test_users_add_list_disable_enable_and_reset(ws: ReviewWorkspace, monkeypatch, typed, capsys) -> None:
    _stdin(monkeypatch, "a fine password\n")
    assert run(["users", "add", "zoe", "--role", "reviewer", "--password-stdin"]) == 0
    assert capsys.readouterr().out == "added reviewer 'zoe'\n"
    accounts.authenticate("zoe", "a fine password")  # the trailing newline is not part of it

    typed.extend(["prompted secret", "prompted secret"])
    assert run(["users", "add", "abe", "--role", "admin"]) == 0
    # two hidden prompts, then the account (not the first admin: ada is, so nothing about sign-in)
    assert typed == [] and capsys.readouterr().out == "Password:Repeat the password:added admin 'abe'\n"
    accounts.authenticate("abe", "prompted secret")

    assert run(["users", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "role", "status", "added"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["ada", "admin", "active"], ["rex", "reviewer", "active"], ["rae", "reviewer", "active"],
        ["roy", "reviewer", "active"], ["zoe", "reviewer", "active"], ["abe", "admin", "active"]]
    assert PASSWORD not in "".join(lines) and "$argon2" not in "".join(lines)

    token = accounts.authenticate("rex", PASSWORD)
    assert run(["users", "disable", "rex"]) == 0
    assert accounts.session_actor(token) is None  # its open session ended
    with pytest.raises(AuthError, match="disabled"):
        accounts.authenticate("rex", PASSWORD)
    assert run(["users", "list"]) == 0
    assert "rex                      reviewer  disabled" in capsys.readouterr().out
    assert run(["users", "enable", "rex"]) == 0
    accounts.authenticate("rex", PASSWORD)

    typed.extend(["brand new secret", "brand new secret"])
    assert run(["users", "reset-password", "rae"]) == 0
    assert "new password set for 'rae'" in capsys.readouterr().out
    with pytest.raises(AuthError):
        accounts.authenticate("rae", PASSWORD)
    accounts.authenticate("rae", "brand new secret")
    _stdin(monkeypatch, "from stdin 1234\r\n")
    assert run(["users", "reset-password", "rae", "--password-stdin"]) == 0
    accounts.authenticate("rae", "from stdin 1234")


def test_first_admin_says_sign_in_is_on(workspace: Path, monkeypatch, capsys) -> None:
    _stdin(monkeypatch, "reviewer pass\n")
    assert run(["users", "add", "rita", "--role", "reviewer", "--password-stdin"]) == 0
    assert not accounts.login_enabled()
    _stdin(monkeypatch, "admin pass 1\n")
    assert run(["users", "add", "al", "--role", "admin", "--password-stdin"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "the dashboard now asks everyone to sign in (this is the workspace's first admin)")
    assert accounts.login_enabled()


def test_bad_account_inputs_are_one_line_and_change_nothing(ws: ReviewWorkspace, monkeypatch, typed, capsys) -> None:
    before = _names()
    # an unknown role is refused before any prompt (``typed`` is empty: a prompt would fail the test)
    _one_error(capsys, ["users", "add", "zed", "--role", "root"], "unknown role 'root'", "admin, reviewer")
    typed.extend(["short"])
    _one_error(capsys, ["users", "add", "zed", "--role", "reviewer"], "password must be 8-1024 characters")
    typed.extend(["first password", "second password"])
    _one_error(capsys, ["users", "add", "zed", "--role", "reviewer"], "the two passwords differ")
    _stdin(monkeypatch, "\n")
    _one_error(capsys, ["users", "add", "zed", "--role", "reviewer", "--password-stdin"], "password must be")
    _one_error(capsys, ["users", "add", "rex", "--role", "reviewer"], "an account named 'rex' exists")
    _one_error(capsys, ["users", "disable", "nobody"], "no account named 'nobody'")
    _one_error(capsys, ["users", "reset-password", "nobody"], "no account named 'nobody'")
    typed.extend(["another password", "not the same one"])
    _one_error(capsys, ["users", "reset-password", "rex"], "the two passwords differ")
    assert typed == [] and _names() == before
    accounts.authenticate("rex", PASSWORD)  # its password did not change


def _create(ws: ReviewWorkspace, *extra: str) -> list[str]:
    tl, ft = ws.checkpoints
    return ["review", "create", "cli-study", "--checkpoint", str(tl), "--checkpoint", "rv-ft",
            "--method", ",".join(METHODS), "--reviewer", "rex", "-r", "rae,roy", *extra]


def test_review_create_status_close_and_reopen(ws: ReviewWorkspace, capsys) -> None:
    samples = [str(int(pk)) for pk in ws.test_pks[2:6]]
    assert run(_create(ws, "--sample", ",".join(samples[:2]), "--sample", samples[2], "--sample", samples[3],
                       "--catch-trials", "2", "--show-contour", "--seed", "3")) == 0
    # 2 checkpoints × 2 methods × 4 samples + 2 catch = 18 cases, each read by 2 of the 3 reviewers
    assert capsys.readouterr().out == "created study 'cli-study': 18 cases, 3 reviewers, 36 readings (2 per case)\n"
    key = studies.unblinding_key("cli-study", actor=LOCAL)
    assert sorted(set(key.sample_pk)) == sorted(int(s) for s in samples) and int(key.is_catch.sum()) == 2
    assert set(key.checkpoint_id) == set(ws.checkpoints)

    assert run(["review", "create", "rand", "--checkpoint", f"{ws.checkpoints[0]},{ws.checkpoints[1]}",
                "--method", "saliency", "--random", "5", "--reviewer", "rex,rae", "--cases-per-reviewer", "3",
                "--readers-per-case", "2"]) == 0
    assert capsys.readouterr().out == "created study 'rand': 3 cases, 2 reviewers, 6 readings (2 per case)\n"

    for _, case_key, _ in reading.queue("cli-study", "rex")[:5]:
        reading.submit_rating("cli-study", "rex", case_key, 4, True)
    assert run(["review", "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["study", "status", "cases", "reviewers", "rated", "created"]
    assert [line.split()[:5] for line in lines[1:]] == [["cli-study", "open", "18", "3", "5/36"],
                                                       ["rand", "open", "3", "2", "0/6"]]
    assert run(["review", "status", "cli-study"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "study 'cli-study' (open): 18 cases, 5/36 readings rated"
    assert [line.split() for line in lines[2:]] == [["rae", "0/12", "not", "yet"], ["rex", "5/12", "not", "yet"],
                                                   ["roy", "0/12", "not", "yet"]]

    queue = reading.queue("rand", "rae")
    for _, case_key, _ in queue:
        reading.submit_rating("rand", "rae", case_key, 3, False)
    reading.submit_study("rand", "rae")
    assert run(["review", "status", "rand"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "study 'rand' (open): 3 cases, 3/6 readings rated"
    rae, rex = (line.split() for line in lines[2:])
    assert rae[:2] == ["rae", "3/3"] and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", " ".join(rae[2:]))
    assert rex == ["rex", "0/3", "not", "yet"]

    assert run(["review", "close", "cli-study"]) == 0
    assert capsys.readouterr().out == "study 'cli-study' is closed: no more ratings are taken\n"
    assert studies.list_studies().set_index("study").loc["cli-study", "status"] == "closed"
    assert run(["review", "reopen", "cli-study"]) == 0
    assert capsys.readouterr().out == "study 'cli-study' is open\n"
    assert studies.list_studies().set_index("study").loc["cli-study", "status"] == "open"


def test_bad_study_inputs_are_one_line_and_change_nothing(ws: ReviewWorkspace, tmp_path: Path, capsys) -> None:
    pk = str(int(ws.test_pks[3]))
    _one_error(capsys, _create(ws), "--sample PK", "--random N")
    _one_error(capsys, _create(ws, "--sample", pk, "--random", "3"), "not both")
    _one_error(capsys, _create(ws, "--sample", "abc"), "--sample takes whole numbers", "'abc'")
    _one_error(capsys, _create(ws, "--random", "999"), "ask for at most 10")
    _one_error(capsys, _create(ws, "--sample", pk, "--method", "nonsense"), "nonsense")
    _one_error(capsys, _create(ws, "--sample", pk, "--reviewer", "ada"), "'ada' is not an active reviewer")
    _one_error(capsys, _create(ws, "--sample", pk, "--checkpoint", "999"), "no registered checkpoint '999'")
    assert studies.list_studies().empty
    for argv in (["review", "status", "nope"], ["review", "close", "nope"], ["review", "reopen", "nope"]):
        _one_error(capsys, argv, "no review study named 'nope'", "xaudit review create")
    assert run(_create(ws, "--sample", pk)) == 0
    _one_error(capsys, _create(ws, "--sample", pk), "a study named 'cli-study' exists")
    _one_error(capsys, ["review", "status", "nope"], "no review study named 'nope'", "studies: cli-study")
    assert len(studies.list_studies()) == 1


@pytest.fixture
def rated(ws: ReviewWorkspace) -> dict[tuple[str, str], tuple[int, bool]]:
    """Study "rated": 2 checkpoints × saliency × 4 samples, both of rex and rae read all 8 cases;
    every rating given, by (reviewer, case key)."""
    studies.create_study(studies.StudySpec(
        name="rated", checkpoints=ws.checkpoints, methods=("saliency",), reviewers=("rex", "rae"),
        samples=tuple(int(p) for p in ws.test_pks[2:6])), actor=LOCAL)
    keys = sorted(studies.unblinding_key("rated", actor=LOCAL).case_key)
    given = {}
    for reviewer, scores in (("rex", [1, 2, 3, 4, 5, 5, 2, 3]), ("rae", [1, 3, 3, 5, 4, 5, 1, 3])):
        for i, (key, score) in enumerate(zip(keys, scores, strict=True)):
            given[(reviewer, key)] = (score, (i + (reviewer == "rae") * (i == 3)) % 2 == 0)
            reading.submit_rating("rated", reviewer, key, score, given[(reviewer, key)][1])
    return given


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty folder for exports (``tmp_path`` holds the workspace too)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_review_export_csv_and_parquet(ws: ReviewWorkspace, rated, out_dir: Path, capsys) -> None:
    from xai_core.review.results import RATING_COLUMNS

    (reviewer, key), (score, plausible) = next(iter(rated.items()))
    formula = '=HYPERLINK("http://evil.example","click")'
    reading.submit_rating("rated", reviewer, key, score, plausible, note=formula)  # a note is free text
    for name in ("ratings.csv", "ratings.parquet"):
        out = out_dir / name
        assert run(["review", "export", "rated", str(out)]) == 0
        assert capsys.readouterr().out == f"wrote 16 ratings to {out}\n"
        frame = pd.read_csv(out) if name.endswith(".csv") else pd.read_parquet(out)
        assert list(frame.columns) == RATING_COLUMNS and len(frame) == 16
        got = {(r.reviewer, r.case_key): (int(r.evidence_match), bool(r.plausible)) for r in frame.itertuples()}
        assert got == rated  # unblinded: each row also names its checkpoint and method
        assert set(frame.method) == {"saliency"} and set(frame.checkpoint) == {"rv-tl", "rv-ft"}
        note = frame.set_index(["reviewer", "case_key"]).loc[(reviewer, key), "note"]
        # CSV: shown as text by a spreadsheet, not run as a formula; Parquet keeps the note as typed
        assert note == ("'" + formula if name.endswith(".csv") else formula)
    assert sorted(p.name for p in out_dir.iterdir()) == ["ratings.csv", "ratings.parquet"]  # no temp file left


def test_bad_exports_are_one_line_and_write_nothing(ws: ReviewWorkspace, rated, out_dir: Path, monkeypatch,
                                                    capsys) -> None:
    _one_error(capsys, ["review", "export", "rated", str(out_dir / "r.xlsx")], "use a .csv or .parquet file name")
    _one_error(capsys, ["review", "export", "rated", str(out_dir / "r")], "use a .csv or .parquet file name")
    _one_error(capsys, ["review", "export", "nope", str(out_dir / "r.csv")], "no review study named 'nope'")
    _one_error(capsys, ["review", "export", "rated", str(out_dir / "missing" / "r.csv")], "does not exist")
    assert list(out_dir.iterdir()) == []

    out = out_dir / "r.csv"
    out.write_text("the previous export\n")

    def fail_halfway(self, path, **kw):  # a full disk after the first bytes
        Path(path).write_text("study,rev")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail_halfway)
    with pytest.raises(OSError, match="No space left"):
        run(["review", "export", "rated", str(out)])
    assert out.read_text() == "the previous export\n" and [p.name for p in out_dir.iterdir()] == ["r.csv"]


def test_review_agreement_matches_the_reference_libraries(ws: ReviewWorkspace, rated, capsys) -> None:
    import krippendorff
    import numpy as np
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    keys = sorted({key for _, key in rated})
    scores = np.array([[rated[(r, k)][0] for k in keys] for r in ("rex", "rae")])
    plausible = np.array([[rated[(r, k)][1] for k in keys] for r in ("rex", "rae")], dtype=float)
    expected = {
        "krippendorff_alpha_ordinal": krippendorff.alpha(reliability_data=scores, level_of_measurement="ordinal",
                                                         value_domain=[1, 2, 3, 4, 5]),
        "krippendorff_alpha_nominal": krippendorff.alpha(reliability_data=plausible, level_of_measurement="nominal"),
        "fleiss_kappa": fleiss_kappa(aggregate_raters(scores.T - 1, n_cat=5)[0], method="fleiss"),
    }
    assert run(["review", "agreement", "rated"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["measure", "outcome", "value", "95%"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(expected)
    for measure, value in expected.items():
        shown = rows[measure]
        assert shown[2] == f"{value:.3f}", (measure, shown)
        low, high = float(shown[3].strip("[,")), float(shown[4].strip("]"))
        assert low <= float(shown[2]) <= high  # a bootstrap CI around the estimate
        assert shown[5:7] == ["8", "2"]  # 8 cases, 2 readers


def test_review_agreement_without_ratings(ws: ReviewWorkspace, capsys) -> None:
    assert run(_create(ws, "--sample", str(int(ws.test_pks[3])))) == 0
    capsys.readouterr()
    assert run(["review", "agreement", "cli-study"]) == 0
    assert capsys.readouterr().out == "study 'cli-study': no ratings yet, so no agreement\n"
    _one_error(capsys, ["review", "agreement", "nope"], "no review study named 'nope'")
