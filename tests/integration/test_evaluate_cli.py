"""``xaudit drift`` / ``xaudit export`` / ``xaudit evaluate`` through the console entry point (``xai_core.cli.run``)
(in-process, same code path as the installed script: user errors -> one line, exit code 2)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from xai_core.cli import run
from tests.seed import add_checkpoint, add_dataset_rows, add_maps


def test_drift_export_and_user_errors(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def _xaudit(*args: str, home: Path) -> SimpleNamespace:
        code = run(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    n, h = 4, 16
    masks = np.zeros((n, h, h), bool)
    masks[:, 4:8, 4:8] = True
    labels = [0, 1, 0, 1]
    pks = add_dataset_rows("tiny", masks, labels)
    tl = add_checkpoint("r-tl", "resnet50", "imagenet", "tl", "tl", pks, labels, labels)
    ft = add_checkpoint("r-ft", "resnet50", "imagenet", "all", "ft", pks, labels, labels, parent_id=tl)
    rng = np.random.default_rng(0)
    add_maps(tl, "gradcam", pks, rng.random((n, h, h)).astype(np.float32))
    add_maps(ft, "gradcam", pks, rng.random((n, h, h)).astype(np.float32))

    out = _xaudit("drift", "--pair", "r-tl:r-ft", home=workspace)
    assert out.returncode == 0, out.stderr
    assert "drift: 4 pairs computed (0 already stored)" in out.stdout
    out = _xaudit("drift", home=workspace)  # default TL->FT pair: all stored already
    assert "drift: 0 pairs computed (4 already stored)" in out.stdout

    csv = tmp_path / "drift.csv"
    out = _xaudit("export", "drift-metrics", str(csv), home=workspace)
    assert out.returncode == 0 and "wrote 4 rows" in out.stdout
    frame = pd.read_csv(csv)
    assert list(frame["checkpoint_a"].unique()) == ["r-tl"] and frame["iou_top20"].between(0, 1).all()

    bad = _xaudit("drift", "--pair", "r-tl", home=workspace)
    assert bad.returncode == 2 and "error: --pair 'r-tl' must look like A:B" in bad.stderr
    bad = _xaudit("export", "gt-metrics", str(tmp_path / "gt.csv"), home=workspace)
    assert bad.returncode == 2 and "table 'gt-metrics' is empty" in bad.stderr
    bad = _xaudit("evaluate", "--metrics", "precision,nope", home=workspace)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: unknown ground-truth metric 'nope'; choose one of precision, mass_accuracy, pointing_game, roc_auc, "
        "average_precision, emd_score, region_share")
    bad = _xaudit("evaluate", "--selection", "sometimes", home=workspace)
    assert bad.returncode == 2 and "selection must be one of correct, all, incorrect" in bad.stderr
    assert "Traceback" not in bad.stderr
