"""bench/gpu.py, the paper-size GPU benchmark, kept from rotting: its ``--tiny`` CPU check runs the
whole script (training, batched engine vs per-image Captum loop, dashboard path) at width 0.125,
32 px, and the batched maps must equal the per-image Captum maps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

from xai_core.attribution import capabilities

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


@pytest.fixture(scope="module")
def gpu() -> ModuleType:
    """bench/gpu.py imported as a module (it is a script, not a package member)."""
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_reference_maps_and_difference_are_what_captum_defines(gpu: ModuleType) -> None:
    """The per-image reference of a linear model: saliency |w_t|, DeepLIFT (zero baseline) |x w_t|,
    t the predicted class; the relative difference is max |a - b| / max |b| per image."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.rand(1, 1, 4, 4)
    w = model[1].weight.detach()
    t = int(model(x).argmax(1))
    np.testing.assert_allclose(gpu.captum_map(model, x, "saliency", {}), w[t].abs().reshape(4, 4).numpy(), rtol=1e-6)
    np.testing.assert_allclose(gpu.captum_map(model, x, "deeplift", {}), (x[0, 0] * w[t].reshape(4, 4)).abs().numpy(),
                               rtol=1e-5, atol=1e-7)
    ours = np.array([[[1.0, 2.0]], [[3.0, 3.0]]], dtype=np.float32)
    ref = np.array([[[1.0, 4.0]], [[3.0, 2.0]]], dtype=np.float32)
    assert gpu.max_rel_diff(ours, ref) == pytest.approx(0.5)  # image 0: 2/4; image 1: 1/3
    assert gpu.passes_per_image("occlusion", {"window": 16, "stride": 8}, 224) == 27 * 27 + 1


def test_tiny_run_tables_and_batched_maps_equal_the_captum_loop(gpu: ModuleType, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAUDIT_HOME", str(tmp_path / "ws"))
    results = tmp_path / "results.md"
    # a generous budget: no image count is cut, so the counts below are exact
    report = gpu.main(["--tiny", "--budget-s", "600", "--results", str(results)])
    assert report.device == "cpu"
    training, attribution, dashboard = report.tables

    assert training.columns == ["run", "images/epoch", "epoch s", "train img/s", "peak GPU MiB", "vs fp32"]
    assert [r[0] for r in training.rows] == ["fp32 (AMP is CUDA-only)"]
    row = training.rows[0]
    assert row[1] == "32" and row[4] == "n/a (cpu)" and row[5] == "1.00x"
    epoch_s, rate = float(row[2]), float(row[3])  # img/s = images / epoch s; epoch s shown to 0.01 s
    assert 32 / (epoch_s + 0.005) - 0.05 <= rate <= 32 / max(epoch_s - 0.005, 1e-9) + 0.05

    assert attribution.columns == ["method", "passes/img", "images engine/loop", "engine img/s", "loop img/s",
                                   "engine/loop", "goal met", "max rel. diff", "peak GPU MiB engine",
                                   "peak GPU MiB loop"]
    assert [r[0] for r in attribution.rows] == [m for m, ok in capabilities("vgg16").items() if ok is True]
    passes = {r[0]: int(r[1]) for r in attribution.rows}
    assert passes["saliency"] == passes["gradcam"] == passes["lrp"] == 1
    assert passes["integrated_gradients"] == 50 and passes["smoothgrad"] == passes["gradient_shap"] == 20
    assert passes["occlusion"] == ((32 - 16) // 8 + 1) ** 2 + 1
    for r in attribution.rows:
        assert r[2] == ("5/5" if int(r[1]) == 1 else "2/2")
        assert r[6] in ("yes", "no") if int(r[1]) == 1 else r[6] == "n/a (multi-pass)"
    by_method = {m.method: m for m in report.methods}
    for name, m in by_method.items():
        if name in ("gradient_shap", "smoothgrad"):  # noise draws differ between batch and loop
            assert m.max_rel_diff is None
        else:
            assert m.max_rel_diff is not None and m.max_rel_diff < 1e-4, (name, m.max_rel_diff)
        assert m.engine_rate > 0 and m.loop_rate > 0

    assert dashboard.columns == ["method", "requests", "computed + stored s", "from the store s", "peak GPU MiB"]
    assert [r[0] for r in dashboard.rows] == ["saliency", "gradcam", "integrated_gradients"]
    assert all(r[1] == "1" and float(r[2]) > 0 and float(r[3]) > 0 for r in dashboard.rows)

    text = results.read_text()
    assert text.startswith("\n## CPU tiny check of `bench/gpu.py` (a smoke run, not a GPU result)")
    assert "GPU benchmark" not in text
    assert all(t.markdown() in text for t in report.tables)


def test_without_cuda_it_refuses_in_one_line(gpu: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        gpu.run([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a CUDA GPU" in err and "--tiny" in err
