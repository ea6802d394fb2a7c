"""Attribution engine throughput: batched engine vs a naive per-sample Captum loop vs the ceiling.

Per method, images per second of

- ``engine``: ``xai_core.attribution.explain`` on the whole batch (batch size B);
- ``naive``: a per-image loop calling Captum / pytorch-grad-cam directly on the user's model
  (forward to find the predicted class, then the method's ``attribute`` on that one image);
- ``fwd+bwd``: the model's plain forward + backward throughput (input and parameter gradients,
  as a training step computes them) at the batch the engine runs: B images for one-pass methods
  (their ceiling), 4 B rows for multi-pass methods, whose ceiling is fwd+bwd / m with m passes per
  image (IG: m = n_steps; GradientSHAP, SmoothGrad: m = n_samples; occlusion: m = number of
  patches + 1, forward only, so it can exceed 100%). ``fwd+bwd(x)``: input gradients only.

Then the dashboard's on-demand path on a real workspace: one image, Saliency, computed and stored
(model already loaded, as the page's ``st.cache_resource`` keeps it), and the same request again
(served from the store).

Defaults: ``vgg16`` width 0.125 at 128 px (``--paper`` for width 1.0 at 224 px), medians of
``--repeats`` runs. Prints a table; ``--markdown FILE`` appends it to a results file.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import captum.attr as ca
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from db import Dataset, reset_engines, session_scope  # noqa: E402
from xai_core.attribution import explain, explain_samples_info, get_method, list_methods  # noqa: E402
from xai_core.config import device as choose_device  # noqa: E402
from xai_core.data import build_dataset, load_dataset  # noqa: E402

PASSES = {"integrated_gradients": "n_steps", "gradient_shap": "n_samples", "smoothgrad": "n_samples"}


def occlusion_passes(size: int, window: int, stride: int) -> int:
    """Forward passes per image of Captum's Occlusion: one per patch position plus the original."""
    per_side = (size - window) // stride + 1
    return per_side * per_side + 1
BENCH_PARAMS = {"integrated_gradients": {"n_steps": 50}, "occlusion": {"window": 32, "stride": 16}}


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, dev: torch.device) -> dict[str, float]:
    """Median (and ``<key>_best``: minimum) wall time of each callable; one warm-up each, then the
    callables take turns (A B C A B C ...) so load from other jobs on a shared machine hits them
    alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            tic = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[key].append(time.perf_counter() - tic)
    return {**{k: statistics.median(v) for k, v in times.items()}, **{f"{k}_best": min(v) for k, v in times.items()}}


def fwd_bwd(model: torch.nn.Module, x: torch.Tensor, batch: int, params_grad: bool) -> Callable[[], None]:
    """One plain forward + backward per batch of ``batch`` images."""
    for p in model.parameters():
        p.requires_grad_(params_grad)

    def run() -> None:
        for start in range(0, x.shape[0], batch):
            xb = x[start:start + batch].clone().requires_grad_(True)
            out = model(xb)
            out.max(dim=1).values.sum().backward()
        model.zero_grad(set_to_none=True)

    return run


def naive_loop(model: torch.nn.Module, x: torch.Tensor, method: str, arch: str) -> Callable[[], None]:
    """Per-image Captum (or pytorch-grad-cam) calls on the caller's model, predicted target."""
    p = {**get_method(method).defaults(), **BENCH_PARAMS.get(method, {})}
    layer = models.get_architecture(arch).cam_layer(model)
    cams = {"gradcam": GradCAM, "gradcam_plus_plus": GradCAMPlusPlus, "layercam": LayerCAM}

    def one(xi: torch.Tensor) -> None:
        with torch.no_grad():
            t = int(model(xi).argmax(1))
        xi = xi.clone().requires_grad_(True)
        zeros = torch.zeros_like(xi)
        if method in cams:
            cam = cams[method](model=model, target_layers=[layer])
            cam(input_tensor=xi, targets=[ClassifierOutputTarget(t)])
            cam.activations_and_grads.release()
        elif method == "saliency":
            ca.Saliency(model).attribute(xi, target=t)
        elif method == "integrated_gradients":
            ca.IntegratedGradients(model).attribute(xi, baselines=zeros, target=t, n_steps=p["n_steps"])
        elif method == "gradient_shap":
            ca.GradientShap(model).attribute(xi, baselines=zeros, target=t, n_samples=p["n_samples"],
                                             stdevs=p["stdevs"])
        elif method == "deeplift":
            ca.DeepLift(model).attribute(xi, baselines=zeros, target=t)
        elif method == "lrp":
            ca.LRP(model).attribute(xi, target=t)
        elif method == "deconvolution":
            ca.Deconvolution(model).attribute(xi, target=t)
        elif method == "guided_backprop":
            ca.GuidedBackprop(model).attribute(xi, target=t)
        elif method == "input_x_gradient":
            ca.InputXGradient(model).attribute(xi, target=t)
        elif method == "smoothgrad":
            ca.NoiseTunnel(ca.Saliency(model)).attribute(xi, nt_type="smoothgrad", nt_samples=p["n_samples"],
                                                         stdevs=p["stdevs"], target=t)
        elif method == "occlusion":
            with torch.no_grad():
                ca.Occlusion(model).attribute(xi, sliding_window_shapes=(1, p["window"], p["window"]),
                                              strides=(1, p["stride"], p["stride"]), target=t)
        else:
            raise KeyError(method)

    def run() -> None:
        for i in range(x.shape[0]):
            one(x[i:i + 1])

    return run


class _FlattenFree(torch.nn.Module):
    """Captum's LRP has no rule for ``nn.Flatten``: the naive loop needs this much canonicalisation
    by hand (the engine does it automatically)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.features, self.avgpool = model.features, model.avgpool
        self.head = torch.nn.Sequential(*list(model.classifier)[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.avgpool(self.features(x)), 1))


def on_demand(model: torch.nn.Module, arch: str, size: int, repeats: int) -> tuple[float, float]:
    """Dashboard path: (first request: compute + store, repeated request: from the store) seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XAUDIT_HOME"] = tmp
        reset_engines()
        pks, ckpt_id = _tiny_workspace(model, arch, size, n=repeats + 1)
        first, cached = [], []
        explain_samples_info(ckpt_id, [pks[-1]], "saliency", model=model)  # warm-up (imports, trace)
        for pk in pks[:repeats]:
            tic = time.perf_counter()
            explain_samples_info(ckpt_id, [pk], "saliency", model=model)
            first.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            res = explain_samples_info(ckpt_id, [pk], "saliency", model=model)
            cached.append(time.perf_counter() - tic)
            assert res.from_cache
        reset_engines()
    return statistics.median(first), statistics.median(cached)


def _tiny_workspace(model: torch.nn.Module, arch: str, size: int, n: int) -> tuple[list[int], int]:
    """A real dataset (data builder) and the model registered as a checkpoint of it."""
    build_dataset("bench", n=max(n, 8), size=size, seed=0)
    ds = load_dataset("bench", None)
    with session_scope() as session:
        ds_id = session.scalar(select(Dataset.id).where(Dataset.name == "bench"))
    info = models.save_checkpoint(model, name="bench", arch=arch, width=0.125, num_classes=2, in_chans=1,
                                  input_size=size, pretrain="none", degree="all", phase="ft", dataset_id=ds_id)
    return [int(p) for p in ds.sample_pks[:n]], int(info.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="vgg16")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--paper", action="store_true", help="vgg16 width 1.0 at 224 px (GPU)")
    parser.add_argument("--images", type=int, default=32, help="images for one-pass methods")
    parser.add_argument("--path-images", type=int, default=8, help="images for multi-pass methods")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(list_methods()))
    parser.add_argument("--device", default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--no-dashboard", action="store_true")
    args = parser.parse_args()
    if args.paper:
        args.width, args.size = 1.0, 224
    dev = choose_device(args.device)
    torch.manual_seed(0)
    model = models.build(args.arch, 2, 1, args.width).eval().to(dev)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    gen = torch.Generator().manual_seed(0)
    x_all = torch.rand(max(args.images, args.path_images), 1, args.size, args.size, generator=gen).to(dev)

    x_one = x_all[:args.images]
    rows = []
    ceilings, ceilings_in = [], []
    for method in methods:
        params = BENCH_PARAMS.get(method, {})
        passes = 1
        if method in PASSES:
            passes = int({**get_method(method).defaults(), **params}[PASSES[method]])
        if method == "occlusion":
            p_all = {**get_method(method).defaults(), **params}
            passes = occlusion_passes(args.size, p_all["window"], p_all["stride"])
        x = x_one if passes == 1 else x_all[:args.path_images]
        n = x.shape[0]
        naive_model = _FlattenFree(model) if method == "lrp" and args.arch == "vgg16" else model
        # the ceiling runs at the batch the engine uses: B images for one-pass methods, the internal
        # batch (4 B rows of image x step/sample/patch) for multi-pass ones
        rows_per_pass = args.batch if passes == 1 else 4 * args.batch
        x_ceiling = x_all.repeat((rows_per_pass + x_all.shape[0] - 1) // x_all.shape[0], 1, 1, 1)[:rows_per_pass]
        t = interleaved_medians({
            "engine": lambda: explain(model, x, method, arch=args.arch, batch_size=args.batch, device=str(dev),
                                      **params),
            "naive": naive_loop(naive_model, x, method, args.arch),
            "fwd_bwd": fwd_bwd(model, x_ceiling, rows_per_pass, True),
            "fwd_bwd_x": fwd_bwd(model, x_ceiling, rows_per_pass, False),
        }, args.repeats, dev)
        for p in model.parameters():
            p.requires_grad_(True)
        engine_rate, naive_rate = n / t["engine"], n / t["naive"]
        ceiling, ceiling_in = rows_per_pass / t["fwd_bwd"], rows_per_pass / t["fwd_bwd_x"]
        ceilings.append(ceiling)
        ceilings_in.append(ceiling_in)
        best = (n / t["engine_best"]) / (n / t["naive_best"]), (n / t["engine_best"]) / (
            rows_per_pass / t["fwd_bwd_best"] / passes)
        rows.append((method, n, passes, engine_rate, naive_rate, ceiling / passes, engine_rate / naive_rate,
                     engine_rate / (ceiling / passes), engine_rate / (ceiling_in / passes), *best))
        print(f"  {method}: engine {engine_rate:.2f}/s naive {naive_rate:.2f}/s ceiling {ceiling / passes:.2f}/s",
              file=sys.stderr, flush=True)
    ceiling, ceiling_in = statistics.median(ceilings), statistics.median(ceilings_in)

    header = (f"{args.arch} width {args.width} at {args.size} px, batch {args.batch}, device {dev}, "
              f"median of {args.repeats} interleaved runs; fwd+bwd {ceiling:.1f} img/s "
              f"(input-gradient-only fwd+bwd {ceiling_in:.1f} img/s; medians over the methods' runs); torch {torch.__version__}, "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    lines = [header, "",
             "| method | images | passes/img | engine img/s | naive img/s | ceiling img/s | engine/naive | "
             "engine/ceiling | engine/ceiling(x) | best-of: engine/naive | best-of: engine/ceiling |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, n, passes, e, nv, ceil, ratio, eff, eff_in, b_ratio, b_eff in rows:
        lines.append(f"| {m} | {n} | {passes} | {e:.2f} | {nv:.2f} | {ceil:.2f} | {ratio:.2f}x | {eff:.0%} | "
                     f"{eff_in:.0%} | {b_ratio:.2f}x | {b_eff:.0%} |")
    if not args.no_dashboard:
        first, cached = on_demand(model.cpu() if dev.type != "cpu" else model, args.arch, args.size, args.repeats)
        lines += ["", f"Dashboard on-demand single-image Saliency: {first:.3f} s computed + stored, "
                      f"{cached:.3f} s served from the store (targets < 1 s and < 0.3 s)."]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with args.markdown.open("a") as fh:
            fh.write(text + "\n\n")


if __name__ == "__main__":
    main()
