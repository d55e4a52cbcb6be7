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

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from ss3d.cameras import Intrinsics
from ss3d.config import ExperimentConfig
from ss3d.data.datasets import RenderedViews
from ss3d.engine import (
    Runtime,
    autocast,
    grad_scaler,
    make_adam,
    move_batch,
    optimiser_step,
)
from ss3d.model import ReconstructionNet, ViewpointNet
from ss3d.stages.data import data_paths, find_renders
from ss3d.stages.pretrain_validation import (
    ValidationSet,
    render_validation,
    sphere_baseline,
    validation_metrics,
)
from ss3d.stages.shell import StageRun, TrainingResult, stage_dir
from ss3d.viz import finish_grid, finish_plot
from ss3d.volume import Rays, camera_rays, render_rays

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
