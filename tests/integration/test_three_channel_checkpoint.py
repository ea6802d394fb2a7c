"""A torchvision resnet18 state dict (3 input channels), imported with ``xaudit models import``,
predicts and is explained on a grey dataset: grey images are replicated to its channels (and
normalised when the checkpoint declares ``--preprocess imagenet``); stored maps stay (H, W)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import models
from xai_core.attribution import read_maps
from xai_core.attribution.jobs import select_samples
from xai_core.cli import run
from xai_core.data import build_dataset

SIZE = 32
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _setup(tmp_path: Path) -> tuple[torchvision.models.ResNet, Path]:
    """A tiny grey benchmark ``grey`` and a random-init torchvision resnet18 (2 classes) saved as a
    plain state dict; returns the reference network (eval mode) and the file."""
    build_dataset("grey", n=12, size=SIZE, seed=0, train_frac=0.5, val_frac=0.1)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=2).eval()
    path = tmp_path / "resnet18-rgb.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def _saliency_by_hand(reference: torch.nn.Module, x3: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, Simonyan's saliency sum_c |d f_pred / d x_c|) of ``reference`` on ``x3``."""
    x = x3.clone().requires_grad_(True)
    logits = reference(x)
    pred = logits.argmax(1)
    logits[torch.arange(len(x)), pred].sum().backward()
    return pred.numpy(), x.grad.abs().sum(1).numpy()


def test_imported_rgb_resnet_on_grey_images_through_cli_and_engine(workspace: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    reference, path = _setup(tmp_path)
    code, out, err = _cli(capsys, "models", "import", str(path), "--arch", "resnet18", "--num-classes", "2",
                          "--dataset", "grey", "--name", "rgb")
    assert code == 0, err
    assert "3 input channel(s), preprocessing none, 32 px" in out
    code, out, err = _cli(capsys, "explain", "-c", "rgb", "-m", "saliency,gradcam", "--split", "all")
    assert code == 0, err
    assert "saliency: 12 computed" in out and "gradcam: 12 computed" in out

    batch = select_samples("grey")
    grey = torch.from_numpy(batch.images.astype(np.float32))[:, None]
    x3 = grey.repeat(1, 3, 1, 1)  # the image repeated 3 times
    ckpt = models.resolve_checkpoint("rgb")
    assert ckpt.in_chans == 3 and ckpt.input_size == SIZE and ckpt.dataset_id is not None
    stored = read_maps(ckpt.id, "saliency", batch.sample_pks.tolist())
    pred, want = _saliency_by_hand(reference, x3)
    assert stored.maps.shape == (12, SIZE, SIZE)
    assert stored.targets.tolist() == pred.tolist()
    np.testing.assert_allclose(stored.maps, want, rtol=2e-3, atol=2e-3 * float(want.max()))  # float16 store
    cams = read_maps(ckpt.id, "gradcam", batch.sample_pks.tolist()).maps
    assert cams.shape == (12, SIZE, SIZE) and float(cams.min()) >= 0.0 and float(cams.max()) <= 1.0 + 1e-3

    # prediction: the loaded checkpoint on grey images == the torchvision network on (g, g, g)
    model, meta = models.load("rgb")
    assert meta["preprocess"] == "none" and meta["in_chans"] == 3
    labels, probs = models.predict(model, batch.images, device="cpu")
    with torch.no_grad():
        expected = torch.softmax(reference(x3), dim=1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
    assert labels.tolist() == pred.tolist()


def test_imported_checkpoint_declaring_imagenet_preprocessing(workspace: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    reference, path = _setup(tmp_path)
    code, out, err = _cli(capsys, "models", "import", str(path), "--arch", "resnet18", "--num-classes", "2",
                          "--dataset", "grey", "--name", "rgb-in", "--preprocess", "imagenet")
    assert code == 0, err
    assert "preprocessing imagenet" in out
    model, meta = models.load("rgb-in")
    assert meta["preprocess"] == "imagenet"
    batch = select_samples("grey")
    x3 = torch.from_numpy(batch.images.astype(np.float32))[:, None].repeat(1, 3, 1, 1)
    _, probs = models.predict(model, batch.images, device="cpu")
    with torch.no_grad():
        np.testing.assert_allclose(probs, torch.softmax(reference((x3 - MEAN) / STD), 1).numpy(), rtol=1e-4, atol=1e-6)

    # maps in image space: the gradient w.r.t. the [0, 1] replicated image (1/std_c of the normalised one)
    code, out, err = _cli(capsys, "explain", "-c", "rgb-in", "-m", "saliency", "--split", "all")
    assert code == 0, err
    stored = read_maps(int(meta["checkpoint_id"]), "saliency", batch.sample_pks.tolist())
    normalised = torch.nn.Sequential(torchvision.transforms.Normalize(MEAN.flatten().tolist(), STD.flatten().tolist()),
                                     reference)
    pred, want = _saliency_by_hand(normalised, x3)
    assert stored.maps.shape == (12, SIZE, SIZE) and stored.targets.tolist() == pred.tolist()
    np.testing.assert_allclose(stored.maps, want, rtol=2e-3, atol=2e-3 * float(want.max()))


def test_import_refuses_bad_declarations_in_one_line(workspace: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, rgb = _setup(tmp_path)
    grey = tmp_path / "vgg-grey.pth"
    torch.save(models.build("vgg16", 2, 1, 0.125).state_dict(), grey)
    bad = [
        ((str(grey), "--arch", "vgg16", "--width", "0.125", "--preprocess", "imagenet"),
         "'imagenet' normalises 3 channels but the model's first convolution takes 1"),
        ((str(rgb), "--arch", "resnet18", "--preprocess", "radimagenet"), "unknown input preprocessing 'radimagenet'"),
        ((str(rgb), "--arch", "resnet18", "--dataset", "nope"), "no dataset named 'nope'"),
        ((str(rgb), "--arch", "resnet18", "--num-classes", "3", "--dataset", "grey"),
         "dataset 'grey' has 2 classes but --num-classes is 3"),
    ]
    for args, message in bad:
        extra = () if "--num-classes" in args else ("--num-classes", "2")
        code, _, err = _cli(capsys, "models", "import", *args, *extra)
        assert code == 2 and err.strip().count("\n") == 0 and message in err, err
    code, _, err = _cli(capsys, "pretrain", "--source", "imagenet", "--arch", "resnet18", "--in-chans", "1")
    assert code == 2 and err.strip().count("\n") == 0
    assert "imagenet weights take 3 input channels (grey images are replicated to them automatically)" in err
    assert models.list_checkpoints() == []  # nothing registered
