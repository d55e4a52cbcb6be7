"""Stage 1: synthetic pre-training with known cameras (README: Pre-training).

``ss3d pretrain --config experiments/smoke.yaml [--resume]`` and notebooks/01_pretrain call
:func:`pretrain_stage`. Per step and object: one rendered view is the encoder input, ``K`` other
views supervise mask and colour on ``R`` sampled rays each. Validation renders novel views of
held-out models (mask IoU, PSNR) next to two baselines computed once: the untrained network
(step 0) and a sphere of the mean object size.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from ss3d.cameras import Intrinsics
from ss3d.config import ExperimentConfig
from ss3d.data.datasets import RenderedViews, crop_like_collection
from ss3d.engine import (
    Runtime,
    autocast,
    grad_scaler,
    make_adam,
    move_batch,
    optimiser_step,
)
from ss3d.eval.baselines import mean_object_radius, sphere_field
from ss3d.hypotheses import viewpoint_accuracy
from ss3d.image_metrics import colour_spread, mask_iou, psnr
from ss3d.model import ReconstructionNet, ViewpointNet
from ss3d.stages.data import data_paths, find_renders
from ss3d.stages.shell import StageRun, TrainingResult, stage_dir
from ss3d.viz import finish_grid, finish_plot
from ss3d.volume import Rays, camera_rays, render_network, render_rays

__all__ = ["PretrainResult", "ValidationSet", "pretrain_loss", "pretrain_stage", "sphere_baseline",
           "training_views"]

log = logging.getLogger(__name__)
STAGE = "pretrain"


@dataclass
class PretrainResult(TrainingResult):
    """Plus the held-out validations and the untrained and sphere baselines."""

    validation: list[dict[str, float]] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Validation data and metrics
# ----------------------------------------------------------------------------------------------
@dataclass
class ValidationSet:
    """Held-out models: input view 0, novel views ``1..n``.

    images (N, 3, H, W); azimuth/elevation/distance (N, n); masks (N, n, H, W);
    rgb (N, n, H, W, 3) with a black background; the input view's own camera
    ``input_azimuth/elevation/distance (N,)`` and mask ``input_masks (N, H, W)`` (its colours
    are ``images``), for input-view fidelity.
    """

    images: torch.Tensor
    azimuth: torch.Tensor
    elevation: torch.Tensor
    distance: torch.Tensor
    masks: torch.Tensor
    rgb: torch.Tensor
    categories: list[str]
    intrinsics: Intrinsics
    input_azimuth: torch.Tensor | None = None  # (N,) camera of the input view
    input_elevation: torch.Tensor | None = None
    input_distance: torch.Tensor | None = None
    input_masks: torch.Tensor | None = None  # (N, H, W)
    # (N, 3, H, W) the input views as the viewpoint network reads them (None: ``images``)
    viewpoint_images: torch.Tensor | None = None

    @classmethod
    def from_renders(cls, path: Path, categories: list[str], splits: tuple[str, ...],
                     max_models: int, novel_views: int,
                     viewpoint_crop_margin: float | None = None) -> ValidationSet:
        index = RenderedViews(path, categories=categories, splits=splits)
        rows = _spread_rows(index.rows, index.row_categories, max_models)
        with h5py.File(path, "r") as f:
            n = min(novel_views, int(f.attrs["views_per_model"]) - 1)
            if n < 1:
                raise ValueError(f"{path}: validation needs at least 2 views per model")
            rgb_u8 = np.stack([f["rgb"][r] for r in rows])  # (N, V, H, W, 3)
            mask_u8 = np.stack([f["mask"][r] for r in rows])  # (N, V, H, W)
            cams = {k: torch.from_numpy(np.stack([f[k][r] for r in rows]))
                    for k in ("azimuth", "elevation", "distance")}
            cats = [str(c) for c in f["category"].asstr()[:][rows]]
        rgb, mask = torch.from_numpy(rgb_u8).float() / 255.0, torch.from_numpy(mask_u8).float()
        viewpoint_images = None if viewpoint_crop_margin is None else torch.stack([
            torch.from_numpy(crop_like_collection(view_rgb, view_mask,
                                                  viewpoint_crop_margin)[0]).permute(2, 0, 1)
            for view_rgb, view_mask in zip(rgb_u8[:, 0], mask_u8[:, 0], strict=True)])
        masked = rgb * mask[..., None]
        return cls(images=masked[:, 0].permute(0, 3, 1, 2).contiguous(),
                   azimuth=cams["azimuth"][:, 1:n + 1], elevation=cams["elevation"][:, 1:n + 1],
                   distance=cams["distance"][:, 1:n + 1], masks=mask[:, 1:n + 1],
                   rgb=masked[:, 1:n + 1], categories=cats, intrinsics=index.intrinsics,
                   input_azimuth=cams["azimuth"][:, 0], input_elevation=cams["elevation"][:, 0],
                   input_distance=cams["distance"][:, 0], input_masks=mask[:, 0],
                   viewpoint_images=viewpoint_images)

    def __len__(self) -> int:
        return self.images.shape[0]


def _spread_rows(rows: np.ndarray, cats: np.ndarray, limit: int) -> list[int]:
    """Up to ``limit`` rows, round-robin over categories (every category is validated)."""
    by_cat = {c: list(rows[cats == c]) for c in sorted(set(cats))}
    out: list[int] = []
    while len(out) < limit and any(by_cat.values()):
        for c in by_cat:
            if by_cat[c] and len(out) < limit:
                out.append(int(by_cat[c].pop(0)))
    return out  # round-robin order: the first rows of a figure cover every category


@torch.no_grad()
def render_validation(field_fn, val: ValidationSet, cfg: ExperimentConfig,
                      device: torch.device) -> dict[str, torch.Tensor]:
    """Render every novel view of ``val``: masks (N, n, H, W), rgb (N, n, H, W, 3); and, where
    ``val`` knows the input view's camera, the input view itself: ``input_mask (N, H, W)``,
    ``input_rgb (N, H, W, 3)``.

    ``field_fn(model_index (b,), points (b, P, 3))`` evaluates the field of those models.
    """
    n_models, n_views = val.azimuth.shape
    idx = torch.arange(n_models, device=device)
    masks, rgbs = [], []
    for v in range(n_views):
        out = render_network(lambda p: field_fn(idx, p),
                             val.azimuth[:, v].to(device), val.elevation[:, v].to(device),
                             val.distance[:, v].to(device), val.intrinsics, cfg.model)
        masks.append(out["mask"].cpu())
        rgbs.append(out["rgb"].cpu())
    rendered = {"mask": torch.stack(masks, 1), "rgb": torch.stack(rgbs, 1)}
    if val.input_distance is not None:
        out = render_network(lambda p: field_fn(idx, p), val.input_azimuth.to(device),
                             val.input_elevation.to(device), val.input_distance.to(device),
                             val.intrinsics, cfg.model)
        rendered.update(input_mask=out["mask"].cpu(), input_rgb=out["rgb"].cpu())
    return rendered


def validation_metrics(rendered: dict[str, torch.Tensor], val: ValidationSet,
                       viewpoint: tuple[torch.Tensor, torch.Tensor] | None = None
                       ) -> dict[str, float]:
    """Held-out mask IoU, PSNR and colour spread (predicted / true standard deviation of the
    object's colours; overall) and mask IoU per category, and with the viewpoint network's
    predictions ``viewpoint = (azimuth, elevation) (N,)`` its acc@30 on the input views.

    Where the input views were rendered too (:func:`render_validation`): input-view fidelity,
    ``input_mask_iou`` and ``input_psnr`` of the reconstruction seen from its own input's
    camera (overall and ``input_mask_iou.<category>``): a model that does not reproduce the
    image it was given is guessing a shape class, not reconstructing."""
    ious = mask_iou(rendered["mask"], val.masks)
    psnrs = psnr(rendered["rgb"].clamp(0, 1), val.rgb)
    spread = colour_spread(rendered["rgb"].clamp(0, 1), rendered["mask"], val.rgb, val.masks)
    metrics = {"mask_iou": float(ious.mean()), "psnr": float(psnrs.mean()),
               "colour_spread": float(spread.nanmean())}
    if viewpoint is not None and val.input_azimuth is not None:
        metrics["viewpoint_acc30"] = float(viewpoint_accuracy(
            *viewpoint, val.input_azimuth, val.input_elevation).mean())
    input_ious = None
    if "input_mask" in rendered and val.input_masks is not None:
        input_ious = mask_iou(rendered["input_mask"], val.input_masks)
        metrics["input_mask_iou"] = float(input_ious.mean())
        metrics["input_psnr"] = float(psnr(rendered["input_rgb"].clamp(0, 1),
                                           val.images.permute(0, 2, 3, 1)).mean())
    for cat in sorted(set(val.categories)):
        sel = torch.tensor([c == cat for c in val.categories])
        metrics[f"mask_iou.{cat}"] = float(ious[sel].mean())
        if input_ious is not None:
            metrics[f"input_mask_iou.{cat}"] = float(input_ious[sel].mean())
    return metrics


def sphere_baseline(renders: Path, rows: np.ndarray, val: ValidationSet, cfg: ExperimentConfig,
                    device: torch.device) -> dict[str, float]:
    """Validation metrics of a sphere with the mean volume of the training models ``rows``,
    coloured with the mean foreground colour of the validation views."""
    radius = mean_object_radius(renders, rows)
    fg = val.rgb[val.masks > 0.5]
    colour = fg.mean(0) if len(fg) else torch.full((3,), 0.5)
    sphere = validation_metrics(render_validation(sphere_field(radius, colour), val, cfg,
                                                  device), val)
    out = {"sphere_mask_iou": sphere["mask_iou"], "sphere_psnr": sphere["psnr"],
           "sphere_radius": radius}
    if "input_mask_iou" in sphere:
        out["sphere_input_mask_iou"] = sphere["input_mask_iou"]
    return out


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def training_views(cfg: ExperimentConfig, renders: Path) -> RenderedViews:
    """The pre-training samples of the experiment's training categories (also self-training's
    rehearsal batches)."""
    return RenderedViews(renders, categories=cfg.data.categories, splits=("train",),
                         views_per_object=cfg.pretrain.views_per_object,
                         rays_per_view=cfg.pretrain.rays_per_view,
                         foreground_fraction=cfg.pretrain.foreground_fraction,
                         edge_fraction=cfg.pretrain.edge_fraction)


def endless(loader: DataLoader, sampler: DistributedSampler | None = None) -> Iterator[dict]:
    """The loader's batches, epoch after epoch (a distributed sampler gets each epoch's seed)."""
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def viewpoint_crop_margin(cfg: ExperimentConfig) -> float | None:
    """The crop margin of the viewpoint network's input views; None for whole views (or no
    viewpoint network)."""
    use = cfg.model.viewpoint_net and cfg.pretrain.viewpoint_crop
    return cfg.data.crop_margin if use else None


class ViewpointTraining:
    """The viewpoint network's own batches, optimiser and schedule (``model.viewpoint_net``).

    One step per pre-training step, on ``pretrain.viewpoint_batch`` rendered views labelled
    with their cameras (cropped like collection photos with ``pretrain.viewpoint_crop``: a
    network that reads crops in self-training and whole renders here would meet a framing
    it never saw), at ``pretrain.viewpoint_lr`` on the reconstruction's schedule; it
    shares no parameter with the reconstruction, so its update never touches (or clips) the
    reconstruction's gradients.
    """

    def __init__(self, net: ViewpointNet, cfg: ExperimentConfig, renders: Path,
                 runtime: Runtime):
        views = RenderedViews(renders, categories=cfg.data.categories, splits=("train",),
                              views_per_object=1, rays_per_view=1,
                              input_crop_margin=viewpoint_crop_margin(cfg))
        sampler = DistributedSampler(views) if runtime.distributed else None
        loader = DataLoader(views, batch_size=runtime.local_batch(cfg.pretrain.viewpoint_batch,
                                                                  len(views)),
                            shuffle=sampler is None, sampler=sampler, drop_last=True,
                            num_workers=cfg.data.num_workers)
        self.net, self.cfg, self.runtime = net, cfg, runtime
        self.batches = endless(loader, sampler)
        self.optimizer = make_adam(net.parameters(), cfg.pretrain.viewpoint_lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: _lr_factor(cfg, s))
        self.scaler = grad_scaler(runtime.device, cfg.optim.amp)

    def step(self) -> dict[str, float]:
        batch = move_batch(next(self.batches), self.runtime.device)
        with autocast(self.runtime.device, self.cfg.optim.amp):
            loss = self.net.loss(batch["image"], batch["input_azimuth"],
                                 batch["input_elevation"])
        optimiser_step(loss, self.optimizer, self.scaler, self.net.parameters(),
                       self.cfg.optim.grad_clip, runtime=self.runtime, scheduler=self.scheduler)
        return {"loss_viewpoint": float(loss.detach())}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict, step: int) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.last_epoch = step


def _lr_factor(cfg: ExperimentConfig, step: int) -> float:
    if cfg.pretrain.schedule == "constant":
        return 1.0
    total = max(cfg.pretrain.steps, 1)
    warmup = min(20, total // 10)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def supervision_rays(batch: dict[str, torch.Tensor], intrinsics: Intrinsics,
                     cfg: ExperimentConfig) -> Rays:
    """Rays of the ``K`` supervision views of each object: origins, directions ``(B, K*R, 3)``
    and near, far ``(B, K*R)``."""
    b, k, r, _ = batch["pixels"].shape
    rays = camera_rays(batch["azimuth"].reshape(-1), batch["elevation"].reshape(-1),
                       batch["distance"].reshape(-1), intrinsics, cfg.model,
                       pixels=batch["pixels"].reshape(b * k, r, 2))
    return Rays(*(t.reshape(b, k * r, *t.shape[2:]) for t in rays))


def pretrain_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                  intrinsics: Intrinsics, cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """``pretrain.mask_weight`` · mask MSE + ``pretrain.rgb_weight`` · colour MSE on the sampled
    rays of the ``K`` supervision views (README: Pre-training)."""
    out = render_rays(lambda p: model(batch["image"], p),
                      *supervision_rays(batch, intrinsics, cfg), cfg.model.n_samples,
                      stratified=True)
    b = batch["mask"].shape[0]
    gt_mask = batch["mask"].reshape(b, -1)
    gt_rgb = batch["rgb"].reshape(b, -1, 3) * gt_mask[..., None]
    loss_mask = F.mse_loss(out["mask"], gt_mask)
    loss_rgb = F.mse_loss(out["rgb"], gt_rgb)
    loss = cfg.pretrain.mask_weight * loss_mask + cfg.pretrain.rgb_weight * loss_rgb
    return {"loss": loss, "loss_mask": loss_mask, "loss_rgb": loss_rgb}


def _validation_figure(val: ValidationSet, rendered: dict[str, torch.Tensor], step: int,
                       count: int = 4) -> plt.Figure:
    count = min(count, len(val))
    n_views = val.masks.shape[1]
    cols = 1 + 4 * n_views
    fig, axes = plt.subplots(count, cols, figsize=(cols * 1.05, count * 1.15), squeeze=False)
    for i in range(count):
        axes[i, 0].imshow(val.images[i].permute(1, 2, 0).numpy())
        axes[i, 0].set_ylabel(val.categories[i], fontsize=7)
        for v in range(n_views):
            base = 1 + 4 * v
            panels = [(val.rgb[i, v].numpy(), "GT rgb"), (val.masks[i, v].numpy(), "GT mask"),
                      (rendered["mask"][i, v].numpy(), "mask"),
                      (rendered["rgb"][i, v].clamp(0, 1).numpy(), "colour")]
            for j, (img, title) in enumerate(panels):
                axes[i, base + j].imshow(img, cmap="gray" if img.ndim == 2 else None,
                                         vmin=0, vmax=1)
                if i == 0:
                    axes[i, base + j].set_title(f"v{v + 1} {title}", fontsize=6)
    axes[0, 0].set_title("input", fontsize=6)
    return finish_grid(fig, axes, f"Held-out models, novel views (step {step})", fontsize=8)


def loss_curve_figure(history: list[dict[str, float]],
                      validation: list[dict[str, float]],
                      baselines: dict[str, float]) -> plt.Figure:
    """Training losses per step, and held-out mask IoU per validation beside the sphere."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    steps = [h["step"] for h in history]
    for key in ("loss", "loss_mask", "loss_rgb"):
        ax1.plot(steps, [h[key] for h in history], label=key, lw=1)
    ax1.set_yscale("log")
    ax2.plot([v["step"] for v in validation], [v["mask_iou"] for v in validation], "o-",
             label="network")
    if "sphere_mask_iou" in baselines:
        ax2.axhline(baselines["sphere_mask_iou"], color="gray", ls="--", label="mean sphere")
    ax2.set_ylim(0, 1)
    return finish_plot(fig, (ax1, "training loss"), (ax2, "held-out novel-view mask IoU"))


@dataclass
class PretrainState:
    """Everything a pre-training checkpoint holds besides the weights and the optimiser."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)
    renders: str = ""
    viewpoint: ViewpointTraining | None = None  # its optimiser travels with the state

    def state_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"history": self.history, "validation": self.validation,
                                 "baselines": self.baselines, "renders": self.renders}
        if self.viewpoint is not None:
            extra["viewpoint_training"] = self.viewpoint.state_dict()
        return extra

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history, self.validation = state.get("history", []), state.get("validation", [])
        self.baselines = state.get("baselines", {})
        if self.viewpoint is not None and "viewpoint_training" in state:
            self.viewpoint.load_state_dict(state["viewpoint_training"], self.step)


def _renders_of(cfg: ExperimentConfig, renders: str | Path | None,
                track: bool) -> tuple[Path, str | None]:
    """The rendered set to train on and the run that rendered it; fails early when missing."""
    run_id = None
    if renders:
        renders = Path(renders)
    else:
        renders, run_id = find_renders(cfg) if track else (data_paths(cfg).renders, None)
    if not renders.is_file():
        raise FileNotFoundError(
            f"no rendered data at {renders}: run notebooks/00_render.ipynb or "
            f"`ss3d render --config <experiment>.yaml` first")
    return renders, run_id


def _validate(net: ReconstructionNet, val: ValidationSet, state: PretrainState,
              cfg: ExperimentConfig, run: StageRun, result: PretrainResult) -> dict[str, float]:
    """Held-out novel-view metrics at ``state.step``: logged, kept, and shown as a figure."""
    device = run.device
    net.eval()
    with torch.no_grad(), autocast(device, cfg.optim.amp):
        latent = net.encode(val.images.to(device))
        rendered = render_validation(lambda idx, p: net.query(p, latent[idx]), val, cfg,
                                     device)
        viewpoint_input = val.images if val.viewpoint_images is None else val.viewpoint_images
        predicted = (net.viewpoint.most_likely(*net.viewpoint(viewpoint_input.to(device)))
                     if net.viewpoint is not None else None)
    net.train()
    metrics = validation_metrics(rendered, val, predicted)
    metrics["step"] = state.step
    state.validation.append(metrics)
    run.log_metrics(metrics, step=state.step, prefix="val/")
    result.figures["validation"] = _validation_figure(val, rendered, state.step)
    run.log_figure(result.figures["validation"], f"validation/step_{state.step:06d}")
    return metrics


def _validation_line(step: int, metrics: dict[str, float]) -> str:
    return (f"step {step}: held-out mask IoU {metrics['mask_iou']:.3f}, "
            f"PSNR {metrics['psnr']:.2f} dB" + (
                f", input-view mask IoU {metrics['input_mask_iou']:.3f}"
                if "input_mask_iou" in metrics else "") + (
                f", viewpoint acc@30 {metrics['viewpoint_acc30']:.2f}"
                if "viewpoint_acc30" in metrics else ""))


def pretrain_stage(cfg: ExperimentConfig, *, renders: str | Path | None = None,
                   resume: bool | str | Path = False, progress: bool = True,
                   track: bool = True) -> PretrainResult:
    """Pre-train on the experiment's synthetic renders; returns the final checkpoint and logs.

    Under ``torchrun`` every process trains on its share of each global batch
    (``optim.batch_size``) and the gradients are averaged: any number of processes trains the
    same way, up to the order of the samples.

    Args:
        renders: rendered-set HDF5 (default: ``<data.root>/renders.h5``).
        resume: ``True`` to continue from ``<output_dir>/<name>/pretrain/last.pt``, or a
            checkpoint path; the step count, optimiser, RNG and MLflow run continue.
    """
    run = StageRun(cfg, STAGE, out_dir=stage_dir(cfg, STAGE), track=track, progress=progress,
                   seed=cfg.seed)
    renders, render_run_id = _renders_of(cfg, renders, track)
    runtime, device = run.runtime, run.device

    train_set = training_views(cfg, renders)
    val = ValidationSet.from_renders(renders, cfg.data.categories, ("val", "test"),
                                     cfg.pretrain.val_models, cfg.pretrain.val_views,
                                     viewpoint_crop_margin(cfg))
    sampler = DistributedSampler(train_set) if runtime.distributed else None
    loader = DataLoader(train_set, batch_size=runtime.local_batch(cfg.optim.batch_size,
                                                                  len(train_set)),
                        shuffle=sampler is None, sampler=sampler, drop_last=True,
                        num_workers=cfg.data.num_workers,
                        persistent_workers=cfg.data.num_workers > 0)

    net = ReconstructionNet(cfg.model).to(device)
    runtime.broadcast_module(net)  # one initialisation on every rank
    optimizer = make_adam(net.reconstruction_parameters(), cfg.pretrain.lr,
                          cfg.pretrain.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(cfg, s))
    scaler = grad_scaler(device, cfg.optim.amp)
    state = PretrainState(renders=str(renders), viewpoint=(
        ViewpointTraining(net.viewpoint, cfg, renders, runtime)
        if net.viewpoint is not None else None))
    if run.resume(resume, state, model=net, optimizer=optimizer) is not None:
        scheduler.last_epoch = state.step
        runtime.info("resuming pre-training at step %d", state.step)
    result = PretrainResult(run_id=None, checkpoint=run.checkpoint)

    with run.open(consumed=[render_run_id]):
        run.set_tag("ss3d.renders", str(renders))
        if not state.baselines:
            # Baselines first: the untrained network and a sphere of the mean object size.
            untrained = _validate(net, val, state, cfg, run, result)
            state.baselines.update({"untrained_mask_iou": untrained["mask_iou"],
                                    "untrained_psnr": untrained["psnr"]})
            state.baselines.update(sphere_baseline(renders, train_set.rows, val, cfg, device))
            run.log_metrics(state.baselines, prefix="baseline/")
        batches = endless(loader, sampler)
        bar = run.bar(range(state.step, cfg.pretrain.steps), desc="pretrain", unit="step",
                      initial=state.step, total=cfg.pretrain.steps)
        for step in bar:
            tic = time.perf_counter()
            batch = move_batch(next(batches), device)
            with autocast(device, cfg.optim.amp):
                losses = pretrain_loss(net, batch, train_set.intrinsics, cfg)
            grad_norm = optimiser_step(losses["loss"], optimizer, scaler,
                                       net.reconstruction_parameters(), cfg.optim.grad_clip,
                                       runtime=runtime, scheduler=scheduler)
            record = {k: float(v.detach()) for k, v in losses.items()}
            if state.viewpoint is not None:
                record.update(state.viewpoint.step())
            state.step = step + 1
            record.update(step=state.step, lr=optimizer.param_groups[0]["lr"],
                          grad_norm=float(grad_norm), step_seconds=time.perf_counter() - tic)
            state.history.append(record)
            run.log_metrics(record, step=state.step)
            bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            last = state.step == cfg.pretrain.steps
            if state.step % cfg.pretrain.val_every == 0 or last:
                run.print(_validation_line(state.step,
                                           _validate(net, val, state, cfg, run, result)))
            if state.step % cfg.pretrain.checkpoint_every == 0 or last:
                run.save(state, model=net, optimizer=optimizer)
        run.finish(state, model=net, optimizer=optimizer)
        if state.validation:
            last = state.validation[-1]
            run.log_headline({"val_mask_iou": last["mask_iou"], "val_psnr": last["psnr"],
                              "val_input_mask_iou": last.get("input_mask_iou"),
                              "viewpoint_acc30": last.get("viewpoint_acc30")})
        result.figures["curves"] = loss_curve_figure(state.history, state.validation,
                                                     state.baselines)
        run.log_figure(result.figures["curves"], "curves")
    result.run_id = run.run_id
    result.history, result.validation = state.history, state.validation
    result.baselines = state.baselines
    result.wall_seconds = run.wall_seconds
    return result
