"""Model-parameter randomisation on a hand-made network whose saliency map is known in closed form.

The toy network is linear: ``logit = W_head · (x ⊙ s + b)`` with a per-pixel scale ``s`` (block1)
and four bias-only blocks (block2..block5). Its input gradient is ``W_head[t] ⊙ s`` whatever the
biases are, so re-initialising a bias block provably leaves the saliency map unchanged, and
re-initialising block1 provably turns it into ``|W_head[t] ⊙ s_fresh|`` with ``s_fresh`` the
seeded fresh network's scale.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from models.architectures import ArchSpec, register, unregister
from xai_core.attribution.engine import explain
from xai_core.errors import UnknownNameError
from xai_core.metrics.sanity_randomise import (
    Step,
    check_layers,
    fresh_model,
    layer_modules,
    layer_names,
    randomised,
    steps,
)
from xai_core.metrics.sanity_similarity import similarities

SIZE = 8


class Scale(nn.Module):
    """``x ⊙ s`` with a learnable per-pixel scale ``s`` (drawn from N(0, 1) at initialisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, 1, SIZE, SIZE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class Shift(nn.Module):
    """``x + b`` with a learnable scalar bias."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class Toy(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 1, width: float = 1.0) -> None:
        super().__init__()
        self.b1, self.b2, self.b3, self.b4, self.b5 = Scale(), Shift(), Shift(), Shift(), Shift()
        self.head = nn.Sequential(nn.Flatten(1), nn.Linear(SIZE * SIZE, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b5(self.b4(self.b3(self.b2(self.b1(x))))))


@pytest.fixture
def toy() -> Iterator[str]:
    register(ArchSpec(name="sanity_toy", family="toy", builder=lambda c, i, w: Toy(c, i, w),
                      blocks=(("b1",), ("b2",), ("b3",), ("b4",), ("b5",)), head=("head",), cam=None,
                      first_conv="b1", min_input_size=SIZE, default_input_size=SIZE, supports_width=False,
                      imagenet=None, description="linear toy network for the sanity tests",
                      head_chain=lambda m: m.head))
    yield "sanity_toy"
    unregister("sanity_toy")


def _trained(seed: int = 123) -> Toy:
    torch.manual_seed(seed)
    return Toy(2).eval()


def test_layers_steps_and_bad_names(toy: str) -> None:
    assert layer_names(toy) == ["head", "block5", "block4", "block3", "block2", "block1"]
    assert layer_modules(toy, "head") == ("head",) and layer_modules(toy, "block2") == ("b2",)
    assert steps(toy, "cascading", ["block1", "block4"]) == [
        Step("block4", ("head", "block5", "block4")),
        Step("block1", ("head", "block5", "block4", "block3", "block2", "block1"))]
    assert steps(toy, "independent", ["block3", "head"]) == [Step("head", ("head",)), Step("block3", ("block3",))]
    with pytest.raises(UnknownNameError, match="choose from head, block5, block4, block3, block2, block1"):
        check_layers(toy, ["block6"])
    with pytest.raises(UnknownNameError, match="unknown sanity mode"):
        steps(toy, "shuffle")


def test_fresh_model_is_deterministic_and_leaves_the_global_rng(toy: str) -> None:
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    one = fresh_model(toy, 2, 1, 1.0, seed=5)
    after = torch.rand(3)
    two = fresh_model(toy, 2, 1, 1.0, seed=5)
    other = fresh_model(toy, 2, 1, 1.0, seed=6)
    assert torch.equal(before, after)  # the global generator is untouched
    assert torch.equal(one.b1.weight, two.b1.weight) and not torch.equal(one.b1.weight, other.b1.weight)


def test_randomising_a_bias_block_leaves_saliency_and_block1_changes_it(toy: str) -> None:
    model = _trained()
    fresh = fresh_model(toy, 2, 1, 1.0, seed=0)
    images = np.random.default_rng(0).random((4, SIZE, SIZE)).astype(np.float32)
    target = np.array([0, 1, 1, 0])
    original = explain(model, images, "saliency", target, arch=toy)
    w_head = model.head[1].weight.detach().numpy().reshape(2, SIZE, SIZE)
    expected = np.abs(w_head[target] * model.b1.weight.detach().numpy()[0])
    np.testing.assert_allclose(original, expected, rtol=1e-6)

    bias_only = randomised(model, toy, ["block2", "block3", "block4", "block5"], fresh)
    assert torch.equal(bias_only.b3.bias, fresh.b3.bias) and not torch.equal(bias_only.b3.bias, model.b3.bias)
    assert torch.equal(model.b3.bias, _trained().b3.bias)  # the trained model is not touched
    same = explain(bias_only, images, "saliency", target, arch=toy)
    np.testing.assert_allclose(same, original, rtol=1e-6)
    values = similarities(original, same)
    np.testing.assert_allclose([values[k] for k in ("sanity_spearman", "sanity_ssim", "sanity_hog")], 1.0, atol=1e-9)

    scale = randomised(model, toy, ["block1"], fresh)
    changed = explain(scale, images, "saliency", target, arch=toy)
    np.testing.assert_allclose(changed, np.abs(w_head[target] * fresh.b1.weight.detach().numpy()[0]), rtol=1e-6)
    rho = similarities(original, changed, ["sanity_spearman"])["sanity_spearman"]
    np.testing.assert_allclose(rho, [spearmanr(o.ravel(), c.ravel())[0] for o, c in zip(original, changed)],
                               rtol=1e-12)
    assert rho.max() < 0.9  # a fresh N(0,1) scale: the map changed (|W_head| still shared, so not 0)


def test_shuffled_labels_permute_train_and_val_only() -> None:
    from models.grid import shuffled_labels
    from models.splits import DataSplits

    y = np.array([0] * 6 + [1] * 4)
    x = np.zeros((10, 4, 4), np.float32)
    splits = DataSplits("d", (x, y), (x[:6], y[:6].copy()), (x, y.copy()), ["a", "b"])
    one, two = shuffled_labels(splits, 3), shuffled_labels(splits, 3)
    np.testing.assert_array_equal(one.train[1], two.train[1])  # seeded
    np.testing.assert_array_equal(one.train[1], np.random.default_rng(3).permutation(y))
    assert sorted(one.train[1].tolist()) == sorted(y.tolist()) and not np.array_equal(one.train[1], y)
    assert one.test[1] is splits.test[1] and one.train[0] is x  # images and the test split untouched
    np.testing.assert_array_equal(splits.train[1], [0] * 6 + [1] * 4)  # the original is not changed
