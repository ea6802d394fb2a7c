"""Training loop: frozen weights untouched, metrics by hand, learning on an easy benchmark."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

import models
from models.augment import augment, dihedral
from models.feature_cache import draw_variants
from models.finetune import TrainConfig, fit
from models.optim import lr_at
from models.prediction import classification_metrics, evaluate, per_class_table, predict
from models.splits import DataSplits, load_splits
from tests.easy_data import easy_benchmark
from xai_core.errors import InvalidValueError, ShapeError


def test_classification_metrics_by_hand() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.2, 0.8, 0.4])  # predicted: 0 1 0 1 0
    m = classification_metrics(labels, np.stack([1 - p1, p1], 1))
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["confusion_matrix"] == [[2, 1], [1, 1]]
    # AUC = P(score of a positive > score of a negative): pairs (0.8 > all 3) + (0.4 > 0.1, 0.2) = 5/6
    assert m["roc_auc"] == pytest.approx(5 / 6)
    # three classes, one-vs-rest macro AUC: perfectly ranked scores give 1.0
    probs3 = np.eye(3)[[0, 1, 2, 2]] * 0.7 + 0.1
    m3 = classification_metrics(np.array([0, 1, 2, 2]), probs3)
    assert m3["roc_auc"] == pytest.approx(1.0) and m3["confusion_matrix"][2] == [0, 0, 2]
    assert classification_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]))["roc_auc"] is None


def test_per_class_metrics_by_hand() -> None:
    """Three classes, two samples each; rows of ``probs`` sum to 1."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.2, 0.3],  # true 0: predicted 0, 0
                      [0.3, 0.4, 0.3], [0.1, 0.2, 0.7],  # true 1: predicted 1, 2
                      [0.2, 0.5, 0.3], [0.4, 0.3, 0.3]])  # true 2: predicted 1, 0
    m = classification_metrics(labels, probs)
    # OvR AUC = P(positive's score > negative's), ties 1/2, over 2 x 4 pairs:
    # class 0: .6 and .5 beat .3 .1 .2 .4 -> 8/8; class 1: .4 beats .3 .2 .3 (3), .2 ties .2 (0.5) -> 3.5/8;
    # class 2: each .3 beats .1, ties .3 .3 -> 2 + 2 = 4/8
    assert m["roc_auc_per_class"] == {"0": 1.0, "1": 0.4375, "2": 0.5}
    assert m["roc_auc_macro"] == pytest.approx((1.0 + 0.4375 + 0.5) / 3)
    assert m["roc_auc"] == pytest.approx(m["roc_auc_macro"])  # sklearn's OvR macro, kept as before
    assert m["true_positives_per_class"] == {"0": 2, "1": 1, "2": 0}
    assert m["n_per_class"] == {"0": 2, "1": 2, "2": 2}
    # a class absent from the split: its AUC is None, the macro averages the other two
    m = classification_metrics(labels[:4], probs[:4])
    assert m["roc_auc"] is None and m["roc_auc_per_class"]["2"] is None
    # class 0 on 4 samples: .6 .5 beat .3 .1 -> 1; class 1: .4 beats .3 .2 (2), .2 ties .2 (0.5) -> 2.5/4
    assert m["roc_auc_per_class"]["0"] == 1.0 and m["roc_auc_per_class"]["1"] == 0.625
    assert m["roc_auc_macro"] == pytest.approx(0.8125) and m["true_positives_per_class"] == {"0": 2, "1": 1, "2": 0}
    table = per_class_table(classification_metrics(labels, probs), ["ellipse", "ring", "multifocal"])
    assert table["class"].tolist() == ["ellipse", "ring", "multifocal"]
    assert table["roc_auc_ovr"].tolist() == [1.0, 0.4375, 0.5] and table["true_positives"].tolist() == [2, 1, 0]
    assert table["recall"].tolist() == [1.0, 0.5, 0.0]
    old = per_class_table({"accuracy": 0.5}, ["a", "b"])  # saved before the per-class metrics: NaN
    assert old["roc_auc_ovr"].isna().all() and old["true_positives"].isna().all()


def test_per_class_auc_agrees_with_sklearn() -> None:
    """Five classes, 200 random samples: per-class OvR AUC and the macro equal sklearn's."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    logits = rng.normal(size=(200, 5)) + 1.5 * np.eye(5)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(labels, probs)
    reference = roc_auc_score(labels, probs, multi_class="ovr", average=None)
    np.testing.assert_allclose([m["roc_auc_per_class"][str(k)] for k in range(5)], reference, rtol=1e-12)
    assert m["roc_auc_macro"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert m["true_positives_per_class"] == {str(k): int(((probs.argmax(1) == labels) & (labels == k)).sum())
                                             for k in range(5)}
    assert sum(m["true_positives_per_class"].values()) == int(round(m["accuracy"] * 200))


def test_learning_rate_schedule() -> None:
    """warm-up 10 steps, flat until step 40, cosine from 40 to 100."""
    assert lr_at(0, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(39, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(40, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(70, 100, 1.0, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, 100, 1.0, 0.1) == pytest.approx(0.0)
    assert lr_at(50, 100, 2.0, 0.1, flat_frac=0.0) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 40 / 90)))


def _splits(n_train: int = 240, size: int = 32) -> DataSplits:
    return DataSplits("easy", easy_benchmark(n_train, size, 0), easy_benchmark(80, size, 1),
                      easy_benchmark(100, size, 2), ["dark", "bright"])


def test_frozen_weights_bit_identical_after_training_and_trainable_ones_move() -> None:
    torch.manual_seed(0)
    model = models.build("vgg16", 2, width=0.125)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = _splits(128)
    fit(model, "vgg16", "2conv", s.train, s.val, TrainConfig(epochs=2, lr=1e-3, batch_size=32, device="cpu"))
    frozen = [f"features.{i}." for i in range(0, 24)]  # blocks 1-3 of vgg16 (BN layout)
    for key, value in model.state_dict().items():
        if key.startswith(tuple(frozen)):
            assert torch.equal(value, before[key]), key
        elif not key.endswith("num_batches_tracked"):
            assert not torch.equal(value, before[key]), key


def test_frozen_batchnorm_statistics_untouched() -> None:
    torch.manual_seed(0)
    model = models.build("resnet18", 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = _splits(64)
    fit(model, "resnet18", "1conv", s.train, s.val, TrainConfig(epochs=1, batch_size=32, device="cpu"))
    after = model.state_dict()
    for key in after:
        if key.startswith(("conv1", "bn1", "layer1", "layer2", "layer3")):
            assert torch.equal(after[key], before[key]), key  # weights AND running_mean/var
    assert not torch.equal(after["layer4.0.bn1.running_mean"], before["layer4.0.bn1.running_mean"])


def test_shared_feature_cache_gives_identical_training() -> None:
    s = _splits(96)
    cfg = TrainConfig(epochs=2, lr=1e-3, batch_size=32, device="cpu")
    torch.manual_seed(1)
    base = models.build("vgg16", 2, width=0.125)
    a, b = models.build("vgg16", 2, width=0.125), models.build("vgg16", 2, width=0.125)
    a.load_state_dict(base.state_dict())
    b.load_state_dict(base.state_dict())
    cache: dict = {}
    fit(a, "vgg16", "2conv", s.train, s.val, cfg)
    fit(models.build("vgg16", 2, width=0.125).eval(), "vgg16", "tl", s.train, s.val, cfg)  # unrelated entries
    fit(b, "vgg16", "2conv", s.train, s.val, cfg, feature_cache=cache)
    assert len(cache) > 0
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_tiny_network_learns_easy_benchmark_within_a_minute() -> None:
    s = _splits(300)
    torch.manual_seed(0)
    model = models.build("vgg16", 2, width=0.125)
    t0 = time.perf_counter()
    result = fit(model, "vgg16", "all", s.train, s.val, TrainConfig(epochs=15, lr=1e-3, batch_size=32, patience=15,
                                                                   device="cpu"))
    seconds = time.perf_counter() - t0
    metrics = evaluate(model, *s.test, device="cpu")
    assert metrics["accuracy"] >= 0.9, result.history
    assert seconds < 60
    assert len(result.history) == 15 and {"train_loss", "val_loss", "val_acc"} <= set(result.history[0])
    pred, probs = predict(model, s.test[0], batch_size=17, device="cpu")
    assert pred.dtype == np.int64 and probs.shape == (100, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert (pred == probs.argmax(1)).all()


def test_bad_data() -> None:
    x, y = easy_benchmark(20)
    one = DataSplits("mono", (x, np.zeros(20, np.int64)), (x, y), (x, y), ["only"])
    with pytest.raises(InvalidValueError, match="only one class"):
        load_splits(one)
    with pytest.raises(ShapeError, match=r"\(N, H, W\) or \(N, C, H, W\)"):
        predict(models.build("vgg16", 2, width=0.125), np.zeros((4, 4)), device="cpu")
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidValueError, match="NaN"):
        predict(models.build("vgg16", 2, width=0.125), bad, device="cpu")


def test_dihedral_group_and_variant_draw_match_on_the_fly_augmentation() -> None:
    x = torch.rand(5, 1, 8, 8)
    assert len({tuple(dihedral(x[0], k).flatten().tolist()) for k in range(8)}) == 8  # 8 distinct elements
    assert torch.equal(dihedral(x, 1), x.transpose(-1, -2).flip(-2))  # one quarter turn (counter-clockwise)
    assert torch.equal(dihedral(x, 4), x.flip(-1))
    rect = torch.rand(2, 1, 4, 6)
    assert [torch.equal(dihedral(rect, k), v) for k, v in ((0, rect), (1, rect.flip(-1)))] == [True, True]
    augmented = augment(x, torch.Generator().manual_seed(0))
    assert all(any(torch.equal(augmented[i], dihedral(x[i], k)) for k in range(8)) for i in range(5))
    block = torch.nn.Conv2d(1, 2, 3)  # a frozen "prefix"
    with torch.no_grad():
        feats = [block(dihedral(x, k)) for k in range(8)]
        idx, pick = torch.tensor([4, 0, 2]), torch.tensor([7, 0, 3])
        drawn = draw_variants(feats, idx, pick)
        for j in range(3):
            expected = block(dihedral(x[idx[j]][None], int(pick[j])))[0]
            torch.testing.assert_close(drawn[j], expected)
    assert torch.equal(draw_variants(feats, idx, None), feats[0][idx])


def test_augmented_training_runs_frozen_blocks_once_not_every_epoch() -> None:
    s = _splits(64)
    calls = []

    def count(epochs: int) -> int:
        torch.manual_seed(0)
        model = models.build("vgg16", 2, width=0.125)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # in frozen block 1
        handle = first.register_forward_hook(lambda *_: calls.append(1))
        calls.clear()
        fit(model, "vgg16", "1conv", s.train, s.val, TrainConfig(epochs=epochs, batch_size=16, augment=True,
                                                                device="cpu"))
        handle.remove()
        return len(calls)

    one, three = count(1), count(3)
    assert one == three  # no per-epoch forward through the frozen blocks
    assert one > 8  # 8 dihedral variants of the training images (+ validation) went through them once
