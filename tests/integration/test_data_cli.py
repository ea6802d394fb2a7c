"""``xaudit data build|import|list`` through the real entry point (``xai_core.cli.run``, what ``main`` calls): config
precedence, printed folder, list table, and user errors as one ``error:`` line with exit code 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from db import Dataset, session_scope
from tests.integration.test_data_build import assert_nothing_written
from tests.integration.test_data_import import make_folder
from xai_core.cli import run

ROOT = Path(__file__).resolve().parents[2]


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_build_flags_override_config_and_print_folder(workspace: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("n: 6\nrotate_deg: 3.5\nmax_lesions: 2\nsize: 48\n")
    code, out, err = run_cli(monkeypatch, capsys, "data", "build", "--name", "cli", "--config", str(cfg),
                             "--n", "8", "--size", "32", "--contrast-sign", "bright")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(workspace / "datasets" / "cli")
    with session_scope() as session:
        ds = session.scalar(select(Dataset).where(Dataset.name == "cli"))
        p = ds.params
        # flags win over the config; config values not given as flags survive; the rest default
        assert (p["n"], p["size"], p["rotate_deg"], p["max_lesions"], p["contrast_sign"]) == (8, 32, 3.5, 2, "bright")
        assert (p["seed"], p["noise_std"]) == (0, 0.03) and ds.n_samples == 8
    code, out, _ = run_cli(monkeypatch, capsys, "data", "list")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split() == ["name", "kind", "n", "size", "classes", "train/val/test"]
    assert row.split() == ["cli", "synthetic", "8", "32", "regular=4", "irregular=4", "6/2/0"]


def test_import_and_list(workspace: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    make_folder(tmp_path / "in", {"a": 5, "b": 6}, masks=False)
    code, out, err = run_cli(monkeypatch, capsys, "data", "import", str(tmp_path / "in"), "--name", "mine",
                             "--size", "16")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(workspace / "datasets" / "mine")
    _, out, _ = run_cli(monkeypatch, capsys, "data", "list")
    assert out.strip().splitlines()[1].split()[:6] == ["mine", "imported", "11", "16", "a=5", "b=6"]


def test_build_k_classes_stores_the_class_names(workspace: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """``--classes 3`` (and ``classes:`` in a config file): n/3 per class, stratified, the class
    names in the DB row, so training reads three classes."""
    from models.splits import load_splits

    cfg = tmp_path / "k.yaml"
    cfg.write_text("classes: 3\n")
    code, out, err = run_cli(monkeypatch, capsys, "data", "build", "--name", "k3", "--config", str(cfg),
                             "--n", "30", "--size", "32")
    assert code == 0, err
    assert "classes ['ellipse', 'lobulated', 'spiculated']" in out
    _, out, _ = run_cli(monkeypatch, capsys, "data", "list")
    assert out.strip().splitlines()[1].split() == ["k3", "synthetic", "30", "32", "ellipse=10", "lobulated=10",
                                                   "spiculated=10", "21/6/3"]
    with session_scope() as session:
        ds = session.scalar(select(Dataset).where(Dataset.name == "k3"))
        assert ds.class_names == ["ellipse", "lobulated", "spiculated"] and ds.params["classes"] == 3
    splits = load_splits("k3")
    assert splits.num_classes == 3 and np.bincount(splits.test[1]).tolist() == [1, 1, 1]


@pytest.mark.parametrize("args,message", [
    (["data", "build", "--name", "x", "--n", "7", "--size", "32"], "error: n must be even"),
    (["data", "build", "--name", "x", "--n", "8", "--irregular-style", "wavy"], "error: irregular_style must be one of"),
    (["data", "build", "--name", "x", "--anatomy", "/nonexistent/anat"], "error: anatomy folder /nonexistent/anat does not exist"),
    (["data", "import", "/nonexistent/in", "--name", "x"], "error: import folder /nonexistent/in does not exist"),
    (["data", "build", "--name", "bad name!"], "error: dataset name 'bad name!' must be letters"),
    (["data", "build", "--name", "x", "--classes", "1"], "error: classes must be an integer 2..5 (got 1)"),
    (["data", "build", "--name", "x", "--classes", "6"], "error: classes must be an integer 2..5 (got 6)"),
    (["data", "build", "--name", "x", "--n", "12", "--classes", "5"], "error: n must be a multiple of classes=5"),
    (["data", "build", "--name", "x", "--variant", "wavy"],
     "error: variant must be one of none, suppressor, confounder (got 'wavy')"),
    (["data", "build", "--name", "x", "--variant", "confounder", "--confounder-strength", "1.2"],
     "error: confounder_strength must be in [0, 1] (got 1.2)"),
    (["data", "build", "--name", "x", "--variant", "confounder", "--confounder-strength", "-0.5"],
     "error: confounder_strength must be in [0, 1] (got -0.5)"),
])
def test_user_errors_are_one_line_exit_2(args, message, workspace: Path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), err
    assert_nothing_written(workspace)


def test_unbalanced_import_through_the_console_script(tmp_path: Path) -> None:
    """The installed ``xaudit`` script in a fresh process: counts in the message, exit code 2."""
    make_folder(tmp_path / "in", {"many": 20, "few": 1}, masks=False)
    env = {**os.environ, "XAUDIT_HOME": str(tmp_path / "ws")}
    env.pop("DATABASE_URL", None)
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "xaudit"), "data", "import", str(tmp_path / "in"),
                           "--name", "skew"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: classes are wildly unbalanced (few=1, many=20; few has < 10% of the largest); "
        "add images or pass --allow-unbalanced"]
    assert not (tmp_path / "ws" / "datasets" / "skew").exists()
