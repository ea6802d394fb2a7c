"""Faithfulness metrics against the reference libraries on shared inputs (a tiny CNN, 16x16 images,
fixed seeds): deletion/insertion against Quantus 0.6.0 ``PixelFlipping``, ROAD against
pytorch-grad-cam 1.5.7's ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst``, faithfulness
correlation against Quantus ``FaithfulnessCorrelation`` with the same random subsets.

Tolerances: curves and correlations 1e-6 (same arithmetic up to float32 forward passes); ROAD
2e-5 on the probability (our batched conjugate-gradient imputation in float32 vs grad-cam's
float64 ``spsolve``), and without the imputation noise (grad-cam draws it from torch's global
generator; with noise the two are compared as distributions).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import quantus
import torch
from pytorch_grad_cam.metrics.road import (
    NoisyLinearImputer,
    ROADLeastRelevantFirst,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirst,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from scipy import ndimage

from xai_core.errors import InvalidValueError
from xai_core.metrics.faithfulness import (
    FaithBatch,
    curve_auc,
    faithfulness_correlation,
    gaussian_blur,
    linear_imputation,
    model_forward,
    perturbation_curves,
    random_subsets,
    road_scores,
)
from xai_core.metrics.registry import get_faithfulness_metric, list_faithfulness_metrics

N, H = 6, 16
P = H * H


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
        torch.nn.Linear(64, 3),
    )
    with torch.no_grad():  # a strong enough signal that removing pixels moves the output
        net[0].weight.mul_(4.0)
    return net.eval()


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((N, 1, H, H)).astype(np.float32)
    maps = rng.random((N, H, H)).astype(np.float32)  # continuous: no ties in the ranking
    targets = np.array([0, 1, 2, 0, 1, 2])
    return images, maps, targets


def _quantus_curves(model, x, a, y, steps, baseline, perturb_func=None, source=None):  # type: ignore[no-untyped-def]
    kwargs = {"perturb_baseline": baseline}
    if perturb_func is not None:
        kwargs = {"perturb_func": perturb_func, "perturb_func_kwargs": {"source": source}}
    metric = quantus.PixelFlipping(features_in_step=P // steps, abs=False, normalise=False, disable_warnings=True,
                                   display_progressbar=False, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(model=model, x_batch=x, y_batch=y, a_batch=a[:, None], device="cpu",
                                 batch_size=len(x)))


def _copy_from_source(arr: np.ndarray, indices: np.ndarray, source: np.ndarray, **_: object) -> np.ndarray:
    """A Quantus perturbation: the indexed features take the values of ``source`` (same batch rows)."""
    out = arr.copy()
    rows = np.arange(arr.shape[0])[:, None]
    out[rows, indices] = source.reshape(arr.shape)[rows, indices]
    return out


@pytest.mark.parametrize("steps", [8, 16])
def test_deletion_equals_quantus_pixel_flipping(steps: int) -> None:
    model = _model()
    x, a, y = _data()
    fwd = model_forward(model, "cpu")
    ours = perturbation_curves(fwd, x, a, y, steps=steps, removal="zero")
    theirs = _quantus_curves(model, x, a, y, steps, 0.0)
    assert ours.shape == (N, steps + 1) and theirs.shape == (N, steps)
    np.testing.assert_allclose(ours[:, 1:], theirs, atol=1e-6)  # Quantus' curve starts after the first step
    probs = torch.softmax(model(torch.from_numpy(x)), 1).detach().numpy()[np.arange(N), y]
    np.testing.assert_allclose(ours[:, 0], probs, atol=1e-6)
    black = torch.softmax(model(torch.zeros(1, 1, H, H)), 1).detach().numpy()[0, y]
    np.testing.assert_allclose(ours[:, -1], black, atol=1e-6)  # every pixel removed: the black image
    # our AUC over [0, 1] = (Quantus' trapezoid over its points + the first segment) / steps
    auc_q = np.trapezoid(theirs, dx=1, axis=1)
    np.testing.assert_allclose(curve_auc(ours), (auc_q + (ours[:, 0] + ours[:, 1]) / 2) / steps, atol=1e-9)

    mean = 0.37  # removal=mean: Quantus takes a fixed baseline value
    np.testing.assert_allclose(perturbation_curves(fwd, x, a, y, steps=steps, removal="mean", mean_value=mean)[:, 1:],
                               _quantus_curves(model, x, a, y, steps, mean), atol=1e-6)


def test_blur_removal_and_insertion_equal_quantus_with_the_same_images() -> None:
    model = _model()
    x, a, y = _data(1)
    fwd = model_forward(model, "cpu")
    blurred = np.stack([ndimage.gaussian_filter(img[0], 2.0, mode="reflect") for img in x])[:, None]
    np.testing.assert_allclose(gaussian_blur(torch.from_numpy(x), 2.0).numpy(), blurred, atol=1e-6)

    deletion = perturbation_curves(fwd, x, a, y, steps=8, removal="blur", blur_sigma=2.0)
    theirs = _quantus_curves(model, x, a, y, 8, None, _copy_from_source, blurred.reshape(N, -1))
    np.testing.assert_allclose(deletion[:, 1:], theirs, atol=1e-6)

    # insertion: start from the blurred image and restore the most relevant pixels first
    insertion = perturbation_curves(fwd, x, a, y, steps=8, removal="blur", blur_sigma=2.0, insertion=True)
    theirs = _quantus_curves(model, blurred.astype(np.float32), a, y, 8, None, _copy_from_source, x.reshape(N, -1))
    np.testing.assert_allclose(insertion[:, 1:], theirs, atol=1e-6)
    np.testing.assert_allclose(insertion[:, 0], deletion[:, -1], atol=1e-6)  # both: the blurred image
    np.testing.assert_allclose(insertion[:, -1], deletion[:, 0], atol=1e-6)  # both: the image


def test_imputation_equals_grad_cam_spsolve() -> None:
    x, a, _ = _data(2)
    removed = torch.from_numpy(a >= np.percentile(a, 70, axis=(1, 2), keepdims=True))
    removed[0, :, :] = True
    removed[0, 5, 5] = False  # one kept pixel: everything else is its harmonic extension
    ours = linear_imputation(torch.from_numpy(x), removed).numpy()
    imputer = NoisyLinearImputer(noise=0.0)
    for i in range(N):  # the reference, one image at a time
        ref = imputer(torch.from_numpy(x[i]), (~removed[i]).float()).numpy()
        np.testing.assert_allclose(ours[i], ref, atol=2e-5)
    np.testing.assert_allclose(ours[0], x[0, 0, 5, 5], atol=2e-5)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_equals_grad_cam_without_noise(order: str) -> None:
    model = _model()
    x, a, y = _data(3)
    fwd = model_forward(model, "cpu")
    percentiles = (10, 30, 50, 80)
    ours = road_scores(fwd, x, a, y, order=order, percentiles=percentiles, noise=0.0)
    one = ROADMostRelevantFirst if order == "morf" else ROADLeastRelevantFirst
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in y]
    for j, q in enumerate(percentiles):
        metric = one(q)
        metric.perturbation.imputer.noise = 0.0
        theirs = metric(torch.from_numpy(x), a, targets, model)
        np.testing.assert_allclose(ours[:, j], theirs, atol=2e-5)
    average = ROADMostRelevantFirstAverage if order == "morf" else ROADLeastRelevantFirstAverage
    ref = average(list(percentiles))
    ref.imputer = lambda q: _noise_free(one(q))
    np.testing.assert_allclose(ours.mean(axis=1), ref(torch.from_numpy(x), a, targets, model), atol=2e-5)
    assert (ours[:, 0] != 0).all()  # the perturbation moved every score


def _noise_free(metric):  # type: ignore[no-untyped-def]
    metric.perturbation.imputer.noise = 0.0
    return metric


def test_road_with_noise_matches_grad_cam_in_distribution_and_is_chunk_independent() -> None:
    model = _model()
    x, a, y = _data(4)
    fwd = model_forward(model, "cpu")
    draws = 20
    ours_all = np.stack([road_scores(fwd, x, a, y, percentiles=(50,), noise=0.01, seed=s)[:, 0] for s in range(draws)])
    torch.manual_seed(0)
    theirs = np.stack([ROADMostRelevantFirst(50)(torch.from_numpy(x), a, [ClassifierOutputSoftmaxTarget(int(t))
                                                                            for t in y], model)
                       for _ in range(draws)])  # grad-cam's default noise 0.01, torch's global generator
    # per sample: the same mean (within 4 standard errors) and a similar spread over the draws
    se = np.sqrt((ours_all.var(axis=0) + theirs.var(axis=0)) / draws)
    assert (np.abs(ours_all.mean(axis=0) - theirs.mean(axis=0)) <= 4 * se + 1e-7).all()
    ratio = ours_all.std(axis=0) / theirs.std(axis=0)
    assert ((ratio > 0.5) & (ratio < 2.0)).all()
    ours = road_scores(fwd, x, a, y, percentiles=(50,), noise=0.05, sample_keys=np.arange(10, 16))[:, 0]
    # a sample's noise is a function of its key, not of the chunk it is computed in
    halves = np.concatenate([road_scores(fwd, x[:3], a[:3], y[:3], percentiles=(50,), noise=0.05,
                                         sample_keys=np.arange(10, 13)),
                             road_scores(fwd, x[3:], a[3:], y[3:], percentiles=(50,), noise=0.05,
                                         sample_keys=np.arange(13, 16))])[:, 0]
    np.testing.assert_allclose(halves, ours, atol=1e-9)


def test_faithfulness_correlation_equals_quantus_on_the_same_subsets() -> None:
    model = _model()
    x, a, y = _data(5)
    runs, subset = 12, 40
    np.random.seed(7)  # Quantus draws run by run, sample by sample; replay the same draws for ours
    subsets = np.zeros((N, runs, subset), np.int64)
    for r in range(runs):
        for i in range(N):
            subsets[i, r] = np.random.choice(P, subset, replace=False)
    np.random.seed(7)
    metric = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=subset, perturb_baseline=0.0, abs=False,
                                             normalise=False, return_aggregate=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(metric(model=model, x_batch=x, y_batch=y, a_batch=a[:, None], device="cpu",
                                   batch_size=N))
    ours = faithfulness_correlation(model_forward(model, "cpu"), x, a, y, subsets=subsets, output="logit")
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert np.isfinite(ours).all()


def test_random_subsets_are_distinct_deterministic_and_per_sample() -> None:
    keys = torch.tensor([3, 4, 5])
    s = random_subsets(P, 40, 7, keys, seed=1)
    assert s.shape == (3, 7, 40)
    assert all(len(set(row.tolist())) == 40 for row in s.reshape(-1, 40))
    assert torch.equal(random_subsets(P, 40, 7, keys[1:], seed=1), s[1:])  # chunk-independent
    assert not torch.equal(random_subsets(P, 40, 7, keys, seed=2), s)
    counts = np.bincount(random_subsets(P, 40, 400, keys, seed=1).reshape(-1).numpy(), minlength=P)
    expected = 3 * 400 * 40 / P  # ~uniform over pixels
    assert abs(counts.mean() - expected) < 1e-9 and counts.std() < 3 * np.sqrt(expected)


def test_registered_metrics_keys_and_bad_input() -> None:
    assert list_faithfulness_metrics()[:5] == ["deletion_auc", "insertion_auc", "road_morf", "road_lerf",
                                               "faithfulness_correlation"]
    deletion = get_faithfulness_metric("deletion_auc")
    assert deletion.key({}) == "deletion_auc" and deletion.key({"steps": "32", "removal": "blur"}) == (
        "deletion_auc[steps=32,removal=blur]")
    assert get_faithfulness_metric("deletion_auc[steps=32]") is deletion
    model = _model()
    x, a, y = _data()
    fwd = model_forward(model, "cpu")
    with pytest.raises(InvalidValueError, match=r"^steps=7 does not divide the 256 pixels of a 16x16 image; "
                                                r"choose a divisor, e.g. 4, 8, 16, 32$"):
        perturbation_curves(fwd, x, a, y, steps=7)
    with pytest.raises(InvalidValueError, match=r"^ROAD percentile 100.0 is out of range; each percentile must be "
                                                r"strictly between 0 and 100"):
        road_scores(fwd, x, a, y, percentiles="50,100")
    # through the registry: values and the curve the job stores
    batch = FaithBatch(fwd, x, a, y, np.arange(N))
    out = deletion.fn(batch, deletion.resolve({"steps": 8}))
    np.testing.assert_allclose(out.values, curve_auc(perturbation_curves(fwd, x, a, y, steps=8)), atol=1e-12)
    assert out.curves.shape == (N, 9) and np.allclose(out.curve_x, np.linspace(0, 1, 9))
