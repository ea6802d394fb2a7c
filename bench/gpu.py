"""The GPU path in one command: the paper-size figures, measured on one CUDA device.

    python bench/gpu.py [--budget-s 480]      # or: make bench-gpu
    python bench/gpu.py --tiny                # CPU check at tiny size (the test suite runs it)

At paper size (``vgg16`` width 1.0, 224 px, one grey channel, two classes; synthetic images, so
nothing is downloaded) it measures

1. **training**: one epoch of ``models.finetune.fit`` (degree ``all``: every block trains) on
   ``--train-images`` synthetic images (seeded uniform noise, random labels; plus a validation
   pass over ``--train-images // 8``), with AMP and, as the baseline of the same run, without;
   the second epoch is timed (the first includes cuDNN's warm-up);
2. **attribution throughput per method**: ``xai_core.attribution.explain`` on a batch of images
   (the engine, batch ``--batch``) vs a per-image loop calling Captum (pytorch-grad-cam for the
   CAMs) directly on the model, as a Captum user writes it: a forward pass for the predicted class,
   then the method's ``attribute`` on that one image. Goal: the engine >= 10x the loop for
   single-pass methods. The loop's maps are compared with the engine's (max |difference| over
   max |map|; not for the two random methods, whose noise draws differ);
3. **on-demand single image in the dashboard path**: ``explain_samples_info`` (what the Explain
   page calls) on a real workspace (a small benchmark dataset of the same size, the model saved as
   its checkpoint and loaded back as the page loads it): computed + stored, then served from the store;
4. **peak GPU memory** of each of the above (``torch.cuda.max_memory_allocated``).

It prints three tables and appends them to ``bench/RESULTS.md`` with the device's name.
``--budget-s`` bounds the measurement time (default 480 s, so the whole run with imports and
start-up stays within 10 minutes): each part gets a share of it, image counts are cut from a
calibration run when the share would be exceeded, and per-image loops stop at their deadline.

Without CUDA it refuses with one line, unless ``--tiny``: the same code on the CPU at width 0.125,
32 px, a few images (a check that the script works, not a result; it writes to a results file only
when ``--results`` names one, under a heading that says so).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from db import reset_engines  # noqa: E402
from xai_core.attribution import capabilities, explain_samples_info, explain_with_info, get_method  # noqa: E402
from xai_core.config import configure_threads  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
ARCH = "vgg16"
GOAL = 10.0  # engine / per-image loop, single-pass methods
RANDOM = frozenset({"gradient_shap", "smoothgrad"})  # noise draws differ between batch and loop
DASHBOARD_METHODS = ("saliency", "gradcam", "integrated_gradients")
SHARES = {"training": 0.25, "attribution": 0.65, "dashboard": 0.10}  # of --budget-s


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the network, the image side and how many images each part uses."""

    width: float
    size: int
    train_images: int  # training epoch (validation: train_images // 8)
    train_batch: int
    images: int  # single-pass methods
    path_images: int  # multi-pass methods (IG, GradientSHAP, SmoothGrad, occlusion)
    batch: int  # engine batch
    dashboard_samples: int  # timed on-demand requests per method
    budget_s: float


PAPER = Sizes(width=1.0, size=224, train_images=4096, train_batch=64, images=256, path_images=16, batch=64,
              dashboard_samples=3, budget_s=480.0)
TINY = Sizes(width=0.125, size=32, train_images=32, train_batch=16, images=5, path_images=2, batch=4,
             dashboard_samples=1, budget_s=60.0)


@dataclass
class Table:
    """One printed table: a title, column names and rows of formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> str:
        """The table as Markdown (title line, header, separator, rows)."""
        head = "| " + " | ".join(self.columns) + " |"
        sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"
        body = ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join([f"**{self.title}**", "", head, sep, *body])


@dataclass
class MethodResult:
    """One method's attribution measurements (rates in images per second, memory in MiB)."""

    method: str
    passes: int
    engine_images: int
    loop_images: int
    engine_rate: float
    loop_rate: float
    max_rel_diff: float | None  # None: random method, not compared
    engine_mib: float | None
    loop_mib: float | None

    @property
    def speedup(self) -> float:
        return self.engine_rate / self.loop_rate


@dataclass
class Report:
    """Everything one run measured, and its text."""

    device: str
    header: str
    tables: list[Table]
    methods: list[MethodResult]
    seconds: float

    def text(self) -> str:
        return "\n\n".join([self.header, *(t.markdown() for t in self.tables)])


# ------------------------------------------------------------------------------------------
# device helpers
# ------------------------------------------------------------------------------------------
def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@dataclass
class Peak:
    """Peak GPU memory of one block in MiB (``None`` on the CPU)."""

    mib: float | None = None


@dataclass
class Peaks:
    """Every block's peak GPU memory (``torch.cuda.max_memory_allocated``, reset at the block's start)."""

    dev: torch.device
    blocks: list[Peak] = field(default_factory=list)

    @contextmanager
    def measure(self) -> Iterator[Peak]:
        peak = Peak()
        self.blocks.append(peak)
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
        try:
            yield peak
        finally:
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
                peak.mib = torch.cuda.max_memory_allocated(self.dev) / 2**20

    @property
    def max_mib(self) -> float | None:
        values = [p.mib for p in self.blocks if p.mib is not None]
        return max(values) if values else None


def _mib(value: float | None) -> str:
    return "n/a (cpu)" if value is None else f"{value:,.0f}"


def device_name(dev: torch.device) -> str:
    """The GPU's name (``torch.cuda.get_device_name``) or the CPU's."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


# ------------------------------------------------------------------------------------------
# 1. training epoch time
# ------------------------------------------------------------------------------------------
def synthetic_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded uniform-noise grey images ``(n, size, size)`` in [0, 1] and random 0/1 labels."""
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size), dtype=np.float32), rng.integers(0, 2, n).astype(np.int64)


def step_seconds(width: float, size: int, batch: int, dev: torch.device) -> float:
    """Seconds of one fp32 training step (forward, backward, AdamW) of ``batch`` images, after one
    warm-up step: the calibration that sizes the training part to its budget."""
    torch.manual_seed(0)
    net = models.build(ARCH, 2, 1, width).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.rand(batch, 1, size, size, device=dev)
    y = torch.zeros(batch, dtype=torch.long, device=dev)
    times = []
    for _ in range(2):
        _sync(dev)
        tic = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(dev)
        times.append(time.perf_counter() - tic)
    del net, opt
    return times[-1]


def training_table(sz: Sizes, dev: torch.device, budget_s: float, peaks: Peaks) -> Table:
    """Seconds of a warm fine-tuning epoch (``fit``, degree ``all``) with AMP and without."""
    from models.finetune import TrainConfig, fit

    runs = [("AMP (fp16 autocast + GradScaler)", True), ("fp32 (baseline)", False)] if dev.type == "cuda" \
        else [("fp32 (AMP is CUDA-only)", False)]
    step = step_seconds(sz.width, sz.size, sz.train_batch, dev)
    # 2 epochs per run, each ~ (n / batch) steps (+ 1/8 validation): cut n to the share if needed
    per_image = step / sz.train_batch * 1.2
    fit_n = int(budget_s / (len(runs) * 2 * per_image))
    n = max(2 * sz.train_batch, min(sz.train_images, fit_n // sz.train_batch * sz.train_batch))
    x, y = synthetic_images(n + n // 8, sz.size, seed=0)
    table = Table(f"Training: `models.finetune.fit`, degree `all`, {n} train + {n // 8} validation synthetic "
                  f"images, batch {sz.train_batch}; the second epoch timed (validation pass included)",
                  ["run", "images/epoch", "epoch s", "train img/s", "peak GPU MiB", "vs fp32"])
    rates: dict[bool, float] = {}
    for label, amp in runs:
        torch.manual_seed(0)
        net = models.build(ARCH, 2, 1, sz.width)
        with peaks.measure() as mem:
            res = fit(net, ARCH, "all", (x[:n], y[:n]), (x[n:], y[n:]),
                      TrainConfig(epochs=2, batch_size=sz.train_batch, amp=amp, device=str(dev), patience=99))
        epoch_s = res.history[1]["seconds"] - res.history[0]["seconds"]
        rates[amp] = n / epoch_s
        table.rows.append([label, str(n), f"{epoch_s:.2f}", f"{n / epoch_s:.1f}", _mib(mem.mib), ""])
        del net
    for row, (_label, amp) in zip(table.rows, runs):
        row[-1] = f"{rates[amp] / rates[False]:.2f}x"
    return table


# ------------------------------------------------------------------------------------------
# 2. attribution: batched engine vs the per-image Captum loop
# ------------------------------------------------------------------------------------------
def passes_per_image(method: str, params: dict[str, Any], size: int) -> int:
    """Forward(+backward) passes one image costs: IG ``n_steps``, GradientSHAP/SmoothGrad
    ``n_samples``, occlusion one per patch position plus the original, 1 otherwise."""
    if "n_steps" in params:
        return int(params["n_steps"])
    if "n_samples" in params:
        return int(params["n_samples"])
    if method == "occlusion":
        per_side = (size - int(params["window"])) // int(params["stride"]) + 1
        return per_side * per_side + 1
    return 1


class FlattenFree(nn.Module):
    """The VGG without its ``nn.Flatten`` module, for which Captum's LRP has no rule: the
    canonicalisation a Captum user does by hand (the engine does it automatically)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.features, self.avgpool = model.features, model.avgpool
        self.head = nn.Sequential(*list(model.classifier)[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.avgpool(self.features(x)), 1))


def captum_map(model: nn.Module, xi: torch.Tensor, method: str, p: dict[str, Any]) -> np.ndarray:
    """One image's map from Captum (pytorch-grad-cam for CAMs) called directly on ``model``, for the
    predicted class, post-processed as the engine's defaults (``|a|`` summed over channels; CAMs as
    the library returns them): ``(H, W)`` float32."""
    import captum.attr as ca
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\..*")  # "setting hooks" on every call
    with torch.no_grad():
        t = int(model(xi).argmax(1))
    cams = {"gradcam": GradCAM, "gradcam_plus_plus": GradCAMPlusPlus, "layercam": LayerCAM}
    if method in cams:
        cam = cams[method](model=model, target_layers=[models.get_architecture(ARCH).cam_layer(model)])
        try:
            return np.asarray(cam(input_tensor=xi.clone().requires_grad_(True),
                                  targets=[ClassifierOutputTarget(t)])[0], dtype=np.float32)
        finally:
            cam.activations_and_grads.release()
    x = xi.clone().requires_grad_(True)
    zeros = torch.zeros_like(xi)
    if method == "saliency":
        a = ca.Saliency(model).attribute(x, target=t, abs=False)
    elif method == "input_x_gradient":
        a = ca.InputXGradient(model).attribute(x, target=t)
    elif method == "deeplift":
        a = ca.DeepLift(model).attribute(x, baselines=zeros, target=t)
    elif method == "lrp":
        a = ca.LRP(FlattenFree(model)).attribute(x, target=t)
    elif method == "deconvolution":
        a = ca.Deconvolution(model).attribute(x, target=t)
    elif method == "guided_backprop":
        a = ca.GuidedBackprop(model).attribute(x, target=t)
    elif method == "integrated_gradients":
        a = ca.IntegratedGradients(model).attribute(x, baselines=zeros, target=t, n_steps=p["n_steps"],
                                                    method=p["integration"])
    elif method == "gradient_shap":
        a = ca.GradientShap(model).attribute(x, baselines=zeros, target=t, n_samples=p["n_samples"],
                                             stdevs=p["stdevs"])
    elif method == "smoothgrad":
        a = ca.NoiseTunnel(ca.Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=p["n_samples"],
                                                         stdevs=p["stdevs"], target=t, abs=False)
    elif method == "occlusion":
        c = xi.shape[1]
        with torch.no_grad():
            a = ca.Occlusion(model).attribute(xi, sliding_window_shapes=(c, p["window"], p["window"]),
                                              strides=(c, p["stride"], p["stride"]), baselines=zeros, target=t)
    else:
        raise KeyError(f"no per-image Captum reference for {method!r}")
    return a.detach().abs().sum(1)[0].float().cpu().numpy()


def max_rel_diff(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest |ours - ref| over the images, relative to the largest |ref| (per image)."""
    scale = np.abs(ref).reshape(len(ref), -1).max(1)
    diff = np.abs(ours - ref).reshape(len(ref), -1).max(1)
    return float((diff / np.maximum(scale, 1e-30)).max())


def measure_method(model: nn.Module, x: torch.Tensor, method: str, sz: Sizes, dev: torch.device,
                   share_s: float, peaks: Peaks, repeats: int = 3) -> MethodResult:
    """Engine vs per-image loop for one method within about ``share_s`` seconds (half each): the
    engine's median of up to ``repeats`` timed runs, the loop's images until done or its deadline."""
    p = get_method(method).defaults()
    passes = passes_per_image(method, p, sz.size)
    n = min(len(x), sz.images if passes == 1 else sz.path_images)
    warm_n = min(sz.batch if passes == 1 else 4, n)
    # engine: a warm-up on one batch (prepares the canonical copy) sizes the timed run to the share
    _sync(dev)
    tic = time.perf_counter()
    explain_with_info(model, x[:warm_n], method, arch=ARCH, batch_size=sz.batch, device=str(dev))
    warm_s = time.perf_counter() - tic
    n = max(warm_n, min(n, int(share_s / 2 / max(warm_s / warm_n, 1e-9))))
    times: list[float] = []
    with peaks.measure() as engine_mem:
        while len(times) < repeats and (not times or sum(times) + times[-1] < share_s / 2):
            tic = time.perf_counter()
            info = explain_with_info(model, x[:n], method, arch=ARCH, batch_size=sz.batch, device=str(dev))
            _sync(dev)
            times.append(time.perf_counter() - tic)
    engine_s = statistics.median(times)
    # the per-image loop: one untimed warm-up image, then images until done or the deadline
    captum_map(model, x[:1].to(dev), method, p)
    refs: list[np.ndarray] = []
    with peaks.measure() as loop_mem:
        _sync(dev)
        tic = time.perf_counter()
        deadline = tic + share_s / 2
        for i in range(n):
            refs.append(captum_map(model, x[i:i + 1].to(dev), method, p))
            if time.perf_counter() > deadline:
                break
        _sync(dev)
        loop_s = time.perf_counter() - tic
    k = len(refs)
    diff = None if method in RANDOM else max_rel_diff(info.maps[:k], np.stack(refs))
    return MethodResult(method, passes, n, k, n / engine_s, k / loop_s, diff, engine_mem.mib, loop_mem.mib)


def attribution_table(sz: Sizes, dev: torch.device, budget_s: float, methods: Sequence[str],
                      peaks: Peaks) -> tuple[Table, list[MethodResult]]:
    """Per method: the engine's and the loop's images per second, their ratio and the goal."""
    torch.manual_seed(0)
    model = models.build(ARCH, 2, 1, sz.width).eval().to(dev)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(max(sz.images, sz.path_images), 1, sz.size, sz.size, generator=gen)
    results = []
    for i, method in enumerate(methods):
        share = budget_s / len(methods)
        results.append(measure_method(model, x, method, sz, dev, share, peaks))
        r = results[-1]
        print(f"  {method}: engine {r.engine_rate:.1f}/s, loop {r.loop_rate:.1f}/s ({i + 1}/{len(methods)})",
              file=sys.stderr, flush=True)
    table = Table(f"Attribution: `explain` batched (batch {sz.batch}) vs a per-image Captum loop; method "
                  "defaults, predicted class; engine: median of up to 3 runs; goal >= 10x for single-pass "
                  "methods; max rel. diff: max |engine - loop| / max |loop map|",
                  ["method", "passes/img", "images engine/loop", "engine img/s", "loop img/s", "engine/loop",
                   "goal met", "max rel. diff", "peak GPU MiB engine", "peak GPU MiB loop"])
    for r in results:
        goal = ("yes" if r.speedup >= GOAL else "no") if r.passes == 1 else "n/a (multi-pass)"
        diff = "n/a (random)" if r.max_rel_diff is None else f"{r.max_rel_diff:.1e}"
        table.rows.append([r.method, str(r.passes), f"{r.engine_images}/{r.loop_images}", f"{r.engine_rate:.1f}",
                           f"{r.loop_rate:.1f}", f"{r.speedup:.1f}x", goal, diff, _mib(r.engine_mib),
                           _mib(r.loop_mib)])
    return table, results


# ------------------------------------------------------------------------------------------
# 3. the dashboard's on-demand path
# ------------------------------------------------------------------------------------------
@contextmanager
def temporary_workspace() -> Iterator[Path]:
    """A throw-away workspace (``XAUDIT_HOME``, SQLite), the previous one restored after."""
    old = {k: os.environ.get(k) for k in ("XAUDIT_HOME", "DATABASE_URL")}
    with tempfile.TemporaryDirectory(prefix="xaudit-gpu-bench-") as tmp:
        os.environ["XAUDIT_HOME"] = tmp
        os.environ.pop("DATABASE_URL", None)
        reset_engines()
        try:
            yield Path(tmp)
        finally:
            reset_engines()
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def dashboard_table(sz: Sizes, dev: torch.device, budget_s: float, peaks: Peaks) -> Table:
    """One image, one request at a time, as the Explain page makes it: ``explain_samples_info``
    with the page's loaded model (computed + stored), then the same request (from the store)."""
    from sqlalchemy import select

    from db import Dataset, session_scope
    from xai_core.data import build_dataset, load_dataset

    table = Table(f"Dashboard on demand: `explain_samples_info` (the Explain page's call), one {sz.size} px "
                  f"image per request, model loaded as the page loads it; medians over the samples",
                  ["method", "requests", "computed + stored s", "from the store s", "peak GPU MiB"])
    deadline = time.perf_counter() + budget_s
    with temporary_workspace():
        n = max(6, sz.dashboard_samples + 1)
        build_dataset("gpu-bench", n=n, size=sz.size, seed=0)
        with session_scope() as session:
            ds_id = session.scalar(select(Dataset.id).where(Dataset.name == "gpu-bench"))
        pks = [int(p) for p in load_dataset("gpu-bench", None).sample_pks]
        torch.manual_seed(0)
        info = models.save_checkpoint(models.build(ARCH, 2, 1, sz.width).eval(), name="gpu-bench", arch=ARCH,
                                      width=sz.width, num_classes=2, in_chans=1, input_size=sz.size,
                                      pretrain="none", degree="all", phase="ft", dataset_id=ds_id)
        model, _meta = models.load(int(info.id))
        for method in DASHBOARD_METHODS:
            # the page's call; device given so that --tiny stays on the CPU (on CUDA it is the page's default)
            explain_samples_info(int(info.id), [pks[-1]], method, model=model, device=str(dev))  # warm-up
            first, stored = [], []
            with peaks.measure() as mem:
                for pk in pks[:sz.dashboard_samples]:
                    res = explain_samples_info(int(info.id), [pk], method, model=model, device=str(dev))
                    assert not res.from_cache and res.device.startswith(dev.type), (res.from_cache, res.device)
                    first.append(res.seconds)
                    again = explain_samples_info(int(info.id), [pk], method, model=model, device=str(dev))
                    assert again.from_cache
                    stored.append(again.seconds)
                    if time.perf_counter() > deadline:
                        break
            table.rows.append([method, str(len(first)), f"{statistics.median(first):.3f}",
                               f"{statistics.median(stored):.4f}", _mib(mem.mib)])
    return table


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU check: width 0.125, 32 px, a few images")
    parser.add_argument("--budget-s", type=float, default=None,
                        help=f"seconds of measurement (default {PAPER.budget_s:.0f}; tiny {TINY.budget_s:.0f})")
    parser.add_argument("--train-images", type=int, default=None, help="images per training epoch")
    parser.add_argument("--images", type=int, default=None, help="images per single-pass method")
    parser.add_argument("--methods", default=",".join(m for m, ok in capabilities("vgg16").items() if ok is True),
                        help="comma-separated method names (default: every method that runs on vgg16)")
    parser.add_argument("--results", type=Path, default=None,
                        help="Markdown file the tables are appended to (default bench/RESULTS.md on CUDA; "
                             "--tiny writes only when this is given)")
    return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> Report:
    """Measure and return the report (``main`` prints and records it). Raises ``SystemExit(2)``
    with one line when CUDA is missing and ``--tiny`` is not given."""
    args = parse(argv)
    if not args.tiny and not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); run it on a CUDA machine, "
              "or pass --tiny for the CPU check at tiny size", file=sys.stderr)
        raise SystemExit(2)
    sz = TINY if args.tiny else PAPER
    sz = replace(sz, budget_s=args.budget_s or sz.budget_s, train_images=args.train_images or sz.train_images,
                 images=args.images or sz.images)
    dev = torch.device("cpu") if args.tiny else torch.device("cuda")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        get_method(m)  # unknown names fail before anything runs
    peaks = Peaks(dev)
    t0 = time.perf_counter()
    tables = [training_table(sz, dev, sz.budget_s * SHARES["training"], peaks)]
    print(tables[0].markdown(), file=sys.stderr, flush=True)
    attr, results = attribution_table(sz, dev, sz.budget_s * SHARES["attribution"], methods, peaks)
    tables.append(attr)
    tables.append(dashboard_table(sz, dev, sz.budget_s * SHARES["dashboard"], peaks))
    seconds = time.perf_counter() - t0
    cuda = (f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()} (TF32 convolutions "
            f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}, TF32 matmul "
            f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'})") if dev.type == "cuda" else ""
    peak = "" if peaks.max_mib is None else f"; peak GPU memory of any part {peaks.max_mib:,.0f} MiB"
    header = (f"{device_name(dev)}: `{ARCH}` width {sz.width} at {sz.size} px, 1 channel, 2 classes; "
              f"torch {torch.__version__}{cuda}; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
              f"budget {sz.budget_s:.0f} s, measured in {seconds:.0f} s{peak}")
    return Report(str(dev), header, tables, results, seconds)


def record(report: Report, path: Path, tiny: bool) -> None:
    """Append the report to ``path`` under a heading naming the device (and, for ``--tiny``, that it
    is the CPU check and not a result)."""
    title = ("## CPU tiny check of `bench/gpu.py` (a smoke run, not a GPU result)" if tiny
             else "## GPU benchmark (`bench/gpu.py`)")
    with path.open("a") as fh:
        fh.write(f"\n{title}\n\n{report.text()}\n")


def main(argv: Sequence[str] | None = None) -> Report:
    """Run, print the tables, append them to the results file."""
    args = parse(argv)
    if args.tiny:
        configure_threads()  # as the CLI does on the CPU: $XAUDIT_THREADS, else one per core
    report = run(argv)
    print(report.text())
    target = args.results if args.results is not None else (None if args.tiny else RESULTS)
    if target is not None:
        record(report, target, args.tiny)
        print(f"appended to {target}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
