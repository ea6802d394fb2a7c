"""Test fixture: a workspace ready for a reading study — a small real benchmark (images and masks
on disk), two seeded checkpoints (TL and FT) with predictions and stored maps of two methods, an
admin and three reviewer accounts. No model weights: every map a case shows comes from the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PASSWORD = "correct horse battery"
ADMIN = "ada"
REVIEWERS = ("rex", "rae", "roy")
METHODS = ("saliency", "gradcam")
VIEWS = Path(__file__).resolve().parents[1] / "ui" / "views"


@dataclass(frozen=True)
class ReviewWorkspace:
    dataset: str
    checkpoints: tuple[int, int]  # (tl, ft)
    test_pks: np.ndarray
    masks: np.ndarray  # (N, H, W) of test_pks
    size: int


def seed_review_workspace(n: int = 80, size: int = 32) -> ReviewWorkspace:
    """Build the fixture in the current workspace (XAUDIT_HOME / DATABASE_URL already set)."""
    from db import Dataset, session_scope
    from sqlalchemy import select
    from tests.seed import add_checkpoint, add_maps
    from xai_core.attribution import get_method
    from xai_core.data.dataset import build_dataset, load_dataset
    from xai_core.review.accounts import add_user

    build_dataset("rv", n=n, size=size, seed=0)
    test = load_dataset("rv", "test")
    with session_scope() as session:
        ds_id = session.scalar(select(Dataset.id).where(Dataset.name == "rv"))
    pks, labels = test.sample_pks, test.labels
    wrong = labels.copy()
    wrong[:2] = 1 - wrong[:2]  # the TL model misclassifies the first two test samples
    tl = add_checkpoint("rv-tl", "vgg16", "natural", "tl", "tl", pks, wrong, labels, dataset_id=ds_id, input_size=size)
    ft = add_checkpoint("rv-ft", "vgg16", "natural", "all", "ft", pks, labels, labels, parent_id=tl,
                        dataset_id=ds_id, input_size=size)
    rng = np.random.default_rng(0)
    for ckpt in (tl, ft):
        for method in METHODS:
            maps = test.masks.astype(np.float32) + 0.1 * rng.random(test.masks.shape, dtype=np.float32)
            add_maps(ckpt, method, pks, maps, params={**get_method(method).resolve({}), "target": "predicted"})
    add_user(ADMIN, "admin", PASSWORD)
    for name in REVIEWERS:
        add_user(name, "reviewer", PASSWORD)
    return ReviewWorkspace("rv", (tl, ft), pks, test.masks, size)


def run_view(view: str, actor: Any = None, timeout: float = 60, **state: Any) -> Any:
    """The dashboard page ``ui/views/<view>.py`` run once (Streamlit's AppTest) as ``actor`` — the
    seeded admin when None — with ``state`` put into its session state first."""
    from streamlit.testing.v1 import AppTest

    from xai_core.review import accounts

    at = AppTest.from_file(str(VIEWS / f"{view}.py"), default_timeout=timeout)
    at.session_state["actor"] = actor or accounts.session_actor(accounts.authenticate(ADMIN, PASSWORD))
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()
