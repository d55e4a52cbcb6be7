"""Stage 2: category-specific self-training with multi-hypothesis cameras (README: Self-training).

Before the first epoch (``selftrain.init=grid``, the default) every image's hypotheses start at
the best poses of a coarse grid, one per azimuth sector, scored with the pre-trained network;
``init=spread`` is the paper's random elevation and distance per sector.

Each training step, for a batch of images (input and target at once):
1. encode the images (latent detached for 2–3);
2. optimise every hypothesis' camera for ``camera_steps`` Adam steps on its own render loss,
   network frozen — all ``B × H`` cameras in one batched render;
3. update the hypothesis logits on the softmax-weighted per-hypothesis loss, scored on the
   whole (downsampled) image so that the weights follow the poses, not the ray noise;
4. (phase B only) update the network on the softmax-weighted loss, weights detached.

The encoder's BatchNorm statistics stay frozen throughout (:func:`train_mode`).

The chosen pose of an image is its highest-weight hypothesis (``selftrain.select=weights``, the
paper) or its lowest full-image loss at ``selftrain.selection_size`` (``select=loss``, the default:
in our measurements a low-noise loss picked better). Both are logged, with best-of-H,
against the hidden true cameras of rendered collections — for evaluation only, never for
training.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ss3d.cameras import FIGURE_DISTANCE, FIGURE_POSES, Intrinsics, pixel_rays, sample_pixels
from ss3d.config import ExperimentConfig
from ss3d.data import taxonomy
from ss3d.data.datasets import ImageCollection, read_hidden_cameras
from ss3d.engine import (
    Runtime,
    autocast,
    grad_scaler,
    load_checkpoint,
    make_adam,
    move_batch,
    optimiser_step,
)
from ss3d.hypotheses import CameraBank, frame_alignment, pose_metrics, viewpoint_accuracy
from ss3d.metrics import mask_iou
from ss3d.model import ReconstructionNet, ViewpointNet, adopt_checkpoint_model
from ss3d.stages.data import data_paths
from ss3d.stages.pretrain import endless, pretrain_loss, training_views
from ss3d.stages.shell import (
    MissingPretrainedError,
    StageRun,
    TrainingResult,
    find_pretrained,
    stage_dir,
)
from ss3d.viz import finish_grid, finish_plot
from ss3d.volume import emission_absorption, ray_bounds, render_network, sample_along_rays

__all__ = ["Collection", "MissingPretrainedError", "SelftrainResult", "ViewpointPrior",
           "choose_hypotheses", "chosen_mask_iou", "evaluate_epoch", "hypothesis_losses",
           "image_losses", "initialise_from_grid", "merge_bank", "network_pixels",
           "network_weights", "pose_grid", "pose_scores", "selftrain_stage", "selftrain_step"]

log = logging.getLogger(__name__)
STAGE = "selftrain"


@dataclass
class SelftrainResult(TrainingResult):
    """Plus the per-epoch evaluations and the final camera bank."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    bank: CameraBank | None = None
    # (N, P) losses of the pose grid under the pre-trained model: they do not depend on H, so
    # a run with other hypotheses on the same data and checkpoint (the ablation) reuses them
    grid_losses: torch.Tensor | None = None


def _sample_pixels(masks: torch.Tensor, count: int, foreground_fraction: float = 0.5
                   ) -> torch.Tensor:
    """``(B, count, 2)`` pixel centres of ``masks (B, 1, H, W)``, ``foreground_fraction`` of
    them on the mask (half of them for the camera search, which only compares poses)."""
    return sample_pixels(masks[:, 0], count, foreground_fraction=foreground_fraction)[1]


def network_pixels(masks: torch.Tensor, cfg: ExperimentConfig) -> torch.Tensor:
    """Phase B's rays: ``selftrain.rays_per_image`` pixel centres ``(B, R, 2)`` of ``masks
    (B, 1, H, W)``, drawn as pre-training draws its rays (``pretrain.foreground_fraction``).

    The ray distribution sets how foreground and background errors are traded, i.e. where the
    learned surface sits. Fine-tuning with another one moves the surface the pre-training
    calibrated: at the true cameras of the embedded airplanes, half the rays on the mask (the
    camera search's share) lowered F@0.05 by 0.13 and uniform rays by 0.21, pre-training's share
    changed it by +0.00 (README: Results).
    """
    return _sample_pixels(masks, cfg.selftrain.rays_per_image, cfg.pretrain.foreground_fraction)


def _gather(images: torch.Tensor, masks: torch.Tensor,
            pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets at ``pixels (B, R, 2)``: rgb ``(B, R, 3)`` and mask ``(B, R)``."""
    b, _, h, w = images.shape
    idx = (pixels[..., 1].long() * w + pixels[..., 0].long())
    rgb = images.reshape(b, 3, -1).gather(2, idx[:, None].expand(b, 3, -1)).transpose(1, 2)
    mask = masks.reshape(b, -1).gather(1, idx)
    return rgb, mask


def hypothesis_losses(net: ReconstructionNet, latent: torch.Tensor, target_rgb: torch.Tensor,
                      target_mask: torch.Tensor, pixels: torch.Tensor, azimuth: torch.Tensor,
                      elevation: torch.Tensor, distance: torch.Tensor, intrinsics: Intrinsics,
                      cfg: ExperimentConfig, n_samples: int) -> torch.Tensor:
    """Render loss of every hypothesis of every image, in one batched render.

    Args:
        latent: ``(B, L)``. target_rgb ``(B, R, 3)``, target_mask ``(B, R)``, pixels ``(B, R, 2)``.
        azimuth, elevation, distance: ``(B, H)`` cameras.

    Returns:
        ``(B, H)`` weighted mask + colour MSE of each hypothesis.
    """
    b, h = azimuth.shape
    r = pixels.shape[1]
    origins, dirs = pixel_rays(azimuth.reshape(-1), elevation.reshape(-1), distance.reshape(-1),
                               intrinsics, pixels=pixels.repeat_interleave(h, 0))
    near, far = ray_bounds(origins, dirs, distance.reshape(-1), cfg.model.ray_bounds,
                           cfg.model.object_radius)
    depths, points = sample_along_rays(origins, dirs, near, far, n_samples, stratified=True)
    # one FiLM set per camera (B·H of them), broadcast over its R·S points; the network in
    # mixed precision where it pays (query returns fp32, so compositing stays fp32)
    with autocast(points.device, cfg.optim.amp):
        rgb_logits, density = net.query(points.reshape(b * h, r * n_samples, 3),
                                        latent.repeat_interleave(h, 0))
    out = emission_absorption(density.reshape(b * h, r, n_samples),
                              torch.sigmoid(rgb_logits.reshape(b * h, r, n_samples, 3)), depths)
    return render_loss(out["mask"], out["rgb"], target_mask.repeat_interleave(h, 0),
                       target_rgb.repeat_interleave(h, 0), cfg).reshape(b, h)


def render_loss(mask: torch.Tensor, rgb: torch.Tensor, target_mask: torch.Tensor,
                target_rgb: torch.Tensor, cfg: ExperimentConfig) -> torch.Tensor:
    """``mask_weight`` · mask MSE + ``rgb_weight`` · colour MSE of each of ``K`` renders:
    ``mask (K, ...)``, ``rgb (K, ..., 3)`` (rays or pixels) -> ``(K,)``.

    The one loss of self-training: the camera search minimises it on a few rays, and the grid,
    the choice and the logits score it on whole downsampled images.
    """
    s = cfg.selftrain
    return (s.mask_weight * (mask - target_mask).pow(2).flatten(1).mean(1)
            + s.rgb_weight * (rgb - target_rgb).pow(2).flatten(1).mean(1))


def optimise_cameras(net: ReconstructionNet, latent: torch.Tensor, images: torch.Tensor,
                     masks: torch.Tensor, raw: list[torch.Tensor], bank: CameraBank,
                     intrinsics: Intrinsics, cfg: ExperimentConfig,
                     index: torch.Tensor | None = None
                     ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """``camera_steps`` Adam steps on all ``B × H`` cameras with the network frozen.

    With ``selftrain.max_azimuth_offset > 0`` (and the images' bank ``index``), every step is
    followed by a projection of each azimuth back to within that many degrees of its anchor
    (:meth:`CameraBank.bound_azimuth`): a hypothesis refines its start and cannot walk into a
    neighbour's sector. Returns the optimised raw parameters and the per-hypothesis losses
    before and after.
    """
    s = cfg.selftrain
    raw = [p.clone().to(images.device).requires_grad_(True) for p in raw]
    # Adam's step is about lr whatever the gradient scale: azimuth is in degrees, the other
    # two in unbounded raw units, so azimuth gets its own (degree-sized) learning rate.
    optimizer = torch.optim.Adam([{"params": [raw[0]], "lr": s.camera_lr * 60.0},
                                  {"params": raw[1:], "lr": s.camera_lr}])
    before = None
    requires = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        for it in range(s.camera_steps + 1):
            pixels = _sample_pixels(masks, s.camera_rays)
            t_rgb, t_mask = _gather(images, masks, pixels)
            az, el, dist = bank.decode(*raw)
            losses = hypothesis_losses(net, latent, t_rgb, t_mask, pixels, az, el, dist,
                                       intrinsics, cfg, s.camera_samples)
            if before is None:
                before = losses.detach()
            if it == s.camera_steps:
                break
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            if index is not None and s.max_azimuth_offset > 0:
                with torch.no_grad():
                    raw[0].copy_(bank.bound_azimuth(raw[0], index, s.max_azimuth_offset))
    finally:
        for p, flag in zip(net.parameters(), requires):
            p.requires_grad_(flag)
    return [p.detach() for p in raw], before, losses.detach()


@torch.no_grad()
def image_losses(net: ReconstructionNet, latents: torch.Tensor, images: torch.Tensor,
                 masks: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor,
                 distance: torch.Tensor, cfg: ExperimentConfig, resolution: int,
                 n_samples: int) -> torch.Tensor:
    """Full-image render loss of ``P`` cameras per image, at a low resolution: ``(B, P)``.

    Args:
        latents: ``(B, L)``; images ``(B, 3, S, S)``, masks ``(B, 1, S, S)``.
        azimuth, elevation, distance: ``(B, P)`` (or ``(P,)``, the same cameras for every image).

    The targets are the images area-downsampled to ``resolution``, and every pixel is a ray: the
    loss has none of the sampling noise of the few-ray camera search. Choosing among poses needs
    that: among the same grid-started hypotheses of the embedded airplanes, 512 random rays at
    full resolution chose a pose within 30° for 33% of the images, this loss at 32 px for 49%.
    """
    resolution = min(resolution, images.shape[-1])  # never upsample: it adds rays, not detail
    small = F.interpolate(torch.cat([images, masks], 1), size=resolution, mode="area")
    intrinsics = Intrinsics.from_fov(cfg.render.fov_degrees, resolution)
    out = []
    for i in range(latents.shape[0]):  # one image's P cameras per render bounds the memory
        cams = [c.to(latents.device) if c.dim() == 1 else c[i].to(latents.device)
                for c in (azimuth, elevation, distance)]
        latent = latents[i:i + 1]
        with autocast(latents.device, cfg.optim.amp):  # the network only: query returns fp32
            rendered = render_network(lambda p, latent=latent: net.query(p, latent.expand(
                p.shape[0], -1)), *cams, intrinsics, cfg.model, n_samples)
        out.append(render_loss(rendered["mask"], rendered["rgb"], small[i, 3],
                               small[i, :3].permute(1, 2, 0), cfg))
    return torch.stack(out)


@dataclass
class ViewpointPrior:
    """The pre-trained viewpoint network's bin log-probabilities for every image of a
    collection, computed once (self-training never trains that network), and the pose prior
    ``selftrain.viewpoint_weight · -log p(azimuth, elevation)`` they give."""

    net: ViewpointNet
    log_azimuth: torch.Tensor  # (N, azimuth_bins)
    log_elevation: torch.Tensor  # (N, elevation_bins)
    weight: float

    @classmethod
    @torch.no_grad()
    def compute(cls, net: ViewpointNet, dataset: ImageCollection, owned: torch.Tensor,
                weight: float, runtime: Runtime) -> ViewpointPrior:
        """Each rank scores the images it owns; the sum over ranks gives every row."""
        was_training = net.training
        net.eval()
        log_az = torch.zeros(len(dataset), net.azimuth_bins)
        log_el = torch.zeros(len(dataset), net.elevation_bins)
        for batch in DataLoader(Subset(dataset, owned.tolist()), batch_size=32):
            a, e = net(batch["image"].to(runtime.device))
            log_az[batch["index"]], log_el[batch["index"]] = a.cpu(), e.cpu()
        net.train(was_training)
        return cls(net, runtime.all_sum(log_az), runtime.all_sum(log_el), weight)

    def penalty(self, index: torch.Tensor, azimuth: torch.Tensor,
                elevation: torch.Tensor) -> torch.Tensor:
        """``weight · -log p`` of cameras ``(B, P)`` (or ``(P,)``, the same for every image) of
        the images ``index (B,)``: ``(B, P)`` on the cameras' device."""
        index = index.cpu()
        azimuth, elevation = azimuth.detach().cpu(), elevation.detach().cpu()
        if azimuth.dim() == 1:
            azimuth = azimuth.expand(len(index), -1)
            elevation = elevation.expand(len(index), -1)
        return -self.weight * self.net.log_prob(self.log_azimuth[index],
                                                self.log_elevation[index], azimuth, elevation)

    def most_likely(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's own pose of every image, azimuth and elevation ``(N,)``."""
        return self.net.most_likely(self.log_azimuth, self.log_elevation)


def pose_scores(net: ReconstructionNet, latents: torch.Tensor, images: torch.Tensor,
                masks: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor,
                distance: torch.Tensor, cfg: ExperimentConfig, resolution: int,
                n_samples: int, prior: ViewpointPrior | None = None,
                index: torch.Tensor | None = None) -> torch.Tensor:
    """What poses are compared on (the pose grid, the logit update, the choice): the
    :func:`image_losses` of the images ``index``, plus the pose ``prior``'s penalty when
    ``selftrain.viewpoint_weight > 0``. ``(B, P)``."""
    losses = image_losses(net, latents, images, masks, azimuth, elevation, distance, cfg,
                          resolution, n_samples)
    if prior is None or prior.weight <= 0:
        return losses
    return losses + prior.penalty(index, azimuth, elevation).to(losses)


def selection_losses(net: ReconstructionNet, latent: torch.Tensor, images: torch.Tensor,
                     masks: torch.Tensor, bank: CameraBank, index: torch.Tensor,
                     cfg: ExperimentConfig, prior: ViewpointPrior | None = None
                     ) -> torch.Tensor:
    """Low-noise per-hypothesis scores of images ``index`` for choosing among them: ``(B, H)``."""
    s = cfg.selftrain
    return pose_scores(net, latent, images, masks, *bank.cameras(index), cfg,
                       s.selection_size, s.camera_samples, prior, index)


def network_weights(scores: torch.Tensor, weights: torch.Tensor, target: str = "weighted",
                    gate_margin: float = 0.0) -> torch.Tensor:
    """Per-hypothesis weights ``(B, H)`` of phase B's network loss.

    Args:
        scores: ``(B, H)`` the step's low-noise full-image losses of the optimised cameras.
        weights: ``(B, H)`` the bank's softmax weights.
        target: ``weighted`` = ``weights`` (the paper: every pose trains the network in
            proportion to its weight); ``chosen`` = one-hot on each image's lowest score.
        gate_margin: an image whose best score is not at least this fraction below its
            runner-up gets an all-zero row, i.e. it is left out of the network update: with
            two poses explaining the image about equally well, training on either can teach
            the shape the wrong side.
    """
    if target == "chosen":
        out = F.one_hot(scores.argmin(-1), scores.shape[-1]).to(weights.dtype)
    elif target == "weighted":
        out = weights.clone()
    else:
        raise ValueError(f"unknown network target {target!r}: use weighted or chosen")
    if gate_margin > 0 and scores.shape[-1] > 1:
        best, runner_up = scores.topk(2, dim=-1, largest=False).values.unbind(-1)
        ambiguous = runner_up - best < gate_margin * best.clamp(min=1e-12)
        out[ambiguous] = 0
    return out


def _synthetic_batches(cfg: ExperimentConfig, device: torch.device, batch_size: int
                       ) -> tuple[Iterator[dict], Intrinsics]:
    """Endless pre-training batches (known cameras) of ``batch_size`` objects for phase-B
    rehearsal, and their intrinsics."""
    renders = data_paths(cfg).renders
    if not renders.is_file():
        raise FileNotFoundError(f"selftrain.rehearsal > 0 needs the synthetic renders, not found "
                                f"at {renders} (run `ss3d render` or set rehearsal to 0)")
    views = training_views(cfg, renders)
    loader = DataLoader(views, batch_size=min(batch_size, len(views)), shuffle=True,
                        drop_last=True, num_workers=cfg.data.num_workers)
    batches = (move_batch(batch, device) for batch in endless(loader))
    return batches, views.intrinsics


def pose_grid(cfg: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The coarse pose grid of ``selftrain.init=grid``: azimuth, elevation, distance, each
    ``(P,)`` with ``P = grid_azimuths · len(grid_elevations) · len(grid_distances)``."""
    s = cfg.selftrain
    azimuth = torch.arange(s.grid_azimuths, dtype=torch.float32) * (360.0 / s.grid_azimuths)
    a, e, d = torch.meshgrid(azimuth, torch.tensor(s.grid_elevations, dtype=torch.float32),
                             torch.tensor(s.grid_distances, dtype=torch.float32), indexing="ij")
    return a.reshape(-1), e.reshape(-1), d.reshape(-1)


def initialise_from_grid(net: ReconstructionNet, dataset: ImageCollection, bank: CameraBank,
                         cfg: ExperimentConfig, runtime: Runtime, owned: torch.Tensor,
                         progress: bool = True, losses: torch.Tensor | None = None,
                         prior: ViewpointPrior | None = None) -> torch.Tensor:
    """``selftrain.init=grid``: hypothesis ``k`` of every image becomes the grid pose of the
    ``k``-th azimuth sector that the (pre-trained) network explains best.

    The hypotheses stay spread over azimuth as in the paper, but elevation and distance are no
    longer random: on the embedded airplanes the chosen start is within 30° for 51% of the
    images (random elevation and distance: 23%).
    A sector without grid azimuths (``H > grid_azimuths``) keeps its spread hypothesis.

    Args:
        owned: ``(n,)`` the images this rank scores; the ranks' scores are summed, so every
            rank sets the same cameras.
        losses: ``(N, P)`` grid losses already computed with the same network and images
            (then nothing is rendered).

    Returns:
        the grid losses ``(N, P)``.
    """
    grid = pose_grid(cfg)
    h = bank.hypotheses
    sector = (grid[0] / (360.0 / h)).floor().long().clamp(max=h - 1)  # (P,)
    if losses is None:
        device = runtime.device
        losses = torch.zeros(len(bank), grid[0].numel())
        for batch in tqdm(DataLoader(Subset(dataset, owned.tolist()), batch_size=8),
                          desc="pose grid", unit="batch", disable=not (progress
                                                                      and runtime.is_main)):
            images, masks = batch["image"].to(device), batch["mask"].to(device)
            with torch.no_grad():
                latents = net.encode(images)
            losses[batch["index"]] = pose_scores(
                net, latents, images, masks, *grid, cfg, cfg.selftrain.score_size,
                cfg.selftrain.grid_samples, prior, batch["index"]).cpu()
        losses = runtime.all_sum(losses)
    index = torch.arange(len(bank))
    az, el, dist = bank.cameras(index)
    for k in range(h):
        members = sector == k
        if not members.any():
            continue
        pick = losses.masked_fill(~members[None], float("inf")).argmin(-1)  # (N,)
        az[:, k], el[:, k], dist[:, k] = grid[0][pick], grid[1][pick], grid[2][pick]
    bank.set_cameras(index, az, el, dist)
    bank.set_anchors()  # a bounded search refines the grid's pick
    return losses


@torch.no_grad()
def render_chosen(net: ReconstructionNet, latent: torch.Tensor, bank: CameraBank,
                  index: torch.Tensor, choice: torch.Tensor, intrinsics: Intrinsics,
                  cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """Full renders ``(B, H, W)`` / ``(B, H, W, 3)`` of images ``index`` (latents ``(B, L)``)
    from their chosen hypotheses."""
    az, el, dist = bank.cameras(index)
    pick = choice[index.cpu()]
    rows = torch.arange(len(index))
    cams = [c[rows, pick].to(latent.device) for c in (az, el, dist)]
    with autocast(latent.device, cfg.optim.amp):  # the network only: query returns fp32
        return render_network(lambda p: net.query(p, latent), *cams, intrinsics, cfg.model)


def curves_figure(history: list[dict[str, float]], epochs: list[dict[str, float]]
                  ) -> plt.Figure:
    """Losses before and after the camera search and the network's, the mean weight entropy
    per step, and mask IoU and pose accuracy per evaluated epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    steps = [r["step"] for r in history]
    for key, label in (("loss_before_cameras", "before camera search"),
                       ("loss_after_cameras", "after camera search"), ("network_loss", "network")):
        rows = [r for r in history if key in r]
        if rows:
            axes[0].plot([r["step"] for r in rows], [r[key] for r in rows], label=label, lw=1)
    axes[1].plot(steps, [r["weight_entropy"] for r in history], lw=1)
    for key in ("pose_acc30", "pose_best_of_h_acc30", "mask_iou"):
        rows = [e for e in epochs if key in e]
        if rows:
            axes[2].plot([e["epoch"] for e in rows], [e[key] for e in rows], "o-", label=key)
    axes[2].set_ylim(0, 1)
    finish_plot(fig, (axes[0], "render loss"), (axes[1], "mean weight entropy"))
    return finish_plot(fig, (axes[2], "per evaluated epoch"), xlabel="epoch")


def train_mode(net: ReconstructionNet) -> ReconstructionNet:
    """Train mode with the encoder's BatchNorm statistics frozen.

    Self-training batches are small and come from one category, so batch statistics are noisy,
    and a "frozen" phase-A network would still drift through its running statistics (the
    camera search would then score poses with latents that evaluation never sees).
    """
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return net


def _figure(images, masks, rendered, weights, novel, step: int) -> plt.Figure:
    n = images.shape[0]
    h = weights.shape[1]
    cols = 4 + novel["rgb"].shape[1]
    fig, axes = plt.subplots(n, cols, figsize=(cols * 1.2, n * 1.2), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i].permute(1, 2, 0).cpu().numpy())
        axes[i, 1].imshow(rendered["rgb"][i].clamp(0, 1).cpu().numpy())
        axes[i, 2].imshow(rendered["mask"][i].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axes[i, 3].bar(range(h), weights[i].numpy(), color="tab:blue")
        axes[i, 3].set_ylim(0, 1)
        for j in range(novel["rgb"].shape[1]):
            axes[i, 4 + j].imshow(novel["rgb"][i, j].clamp(0, 1).cpu().numpy())
    titles = ["input", "render (chosen)", "mask (chosen)", "weights"] + [
        f"novel {j + 1}" for j in range(novel["rgb"].shape[1])]
    for j, title in enumerate(titles):
        axes[0, j].set_title(title, fontsize=7)
    return finish_grid(fig, axes, f"Self-training (step {step})", fontsize=8)


# ----------------------------------------------------------------------------------------------
# One training step, and the evaluation of an epoch
# ----------------------------------------------------------------------------------------------
@dataclass
class Collection:
    """What every step and evaluation of one self-training run reads.

    ``owned``: the image indices this rank trains and scores (all of them in one process);
    ``truth``: hidden true cameras of a rendered collection, for evaluation only.
    """

    dataset: ImageCollection
    bank: CameraBank
    owned: torch.Tensor
    intrinsics: Intrinsics
    truth: dict[str, dict]
    prior: ViewpointPrior | None = None  # selftrain.viewpoint_weight > 0

    @classmethod
    def load(cls, path: Path, cfg: ExperimentConfig, runtime: Runtime) -> Collection:
        """The training images of a collection file, a fresh camera bank, this rank's share."""
        s = cfg.selftrain
        dataset = ImageCollection(path, split="train")
        bank = CameraBank(list(dataset.image_ids), s.hypotheses, tuple(s.elevation_init),
                          tuple(s.distance_range), seed=cfg.seed)
        return cls(dataset=dataset, bank=bank, owned=runtime.shard(len(dataset)),
                   intrinsics=Intrinsics.from_fov(cfg.render.fov_degrees, dataset.crop_size),
                   truth=read_hidden_cameras(path))  # truth: for evaluation only

    def batches(self, batch_size: int = 16) -> DataLoader:
        """This rank's images in order, for scoring (no training)."""
        return DataLoader(Subset(self.dataset, self.owned.tolist()), batch_size=batch_size)


def merge_bank(bank: CameraBank, owned: torch.Tensor, runtime: Runtime) -> None:
    """Every rank's rows of the camera bank on every rank.

    Each rank changes only the hypotheses and logits of the images it owns; summing the ranks'
    tensors with the other rows zeroed gives the whole bank (each row has one owner).
    """
    if not runtime.distributed:
        return
    mine = torch.zeros(len(bank), 1)
    mine[owned] = 1.0
    for key in ("raw_azimuth", "raw_elevation", "raw_distance", "logits"):
        setattr(bank, key, runtime.all_sum(getattr(bank, key) * mine))


def selftrain_step(net: ReconstructionNet, batch: dict[str, torch.Tensor], data: Collection,
                   optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   cfg: ExperimentConfig, runtime: Runtime, phase_b: bool,
                   rehearsal: tuple[Iterator[dict], Intrinsics] | None = None
                   ) -> dict[str, float]:
    """One self-training step on a batch of images (the numbered steps of the module text).

    Returns the step's record (losses before/after the camera search, weight entropy and, in
    phase B, the network loss).
    """
    s, bank, device = cfg.selftrain, data.bank, runtime.device
    idx = batch["index"]
    images, masks = batch["image"].to(device), batch["mask"].to(device)
    with torch.no_grad():
        latent = net.encode(images)
    raw, before, after = optimise_cameras(net, latent, images, masks, list(bank.raw(idx)), bank,
                                          data.intrinsics, cfg, index=idx)
    bank.set_raw(idx, raw)
    # The logits follow the low-noise full-image loss of the optimised cameras, not the
    # few-ray search loss (whose noise is as large as the gaps between poses).
    scores = pose_scores(net, latent, images, masks, *bank.cameras(idx), cfg,
                         s.score_size, s.camera_samples, data.prior, idx).cpu()
    # logits: gradient step on sum_h softmax(l)_h * loss_h (losses detached), per image: a
    # batch mean would shrink every image's step by the batch size
    logits = bank.logits[idx].clone().requires_grad_(True)
    (torch.softmax(logits, -1) * scores).sum().backward()
    bank.logits[idx] = (logits - s.logit_lr * logits.grad).detach()
    weights = bank.weights(idx).to(device)
    record = {"loss_before_cameras": float(before.mean()),
              "loss_after_cameras": float(after.mean()),
              "weight_entropy": float(-(weights * weights.clamp(min=1e-9).log()).sum(-1).mean())}
    if not phase_b:
        return record
    target = network_weights(scores, weights.detach().cpu(), s.network_target,
                             s.gate_margin).to(device)
    rows = (target.sum(-1) > 0).nonzero()[:, 0]
    record["network_images"] = float(len(rows))
    # no image of any rank unambiguous and no rehearsal: no network update this step (every
    # rank decides the same, since each update all-reduces)
    wanted = torch.tensor(float(len(rows) > 0 or rehearsal is not None))
    if float(runtime.all_sum(wanted)) == 0:
        return record
    with autocast(device, cfg.optim.amp):
        loss = torch.zeros((), device=device)
        if len(rows):
            latent = net.encode(images[rows])
            pixels = network_pixels(masks[rows], cfg)
            t_rgb, t_mask = _gather(images[rows], masks[rows], pixels)
            cams = bank.decode(*(r.to(device)[rows] for r in raw))
            w = target[rows]
            if s.network_target == "chosen":  # one render per image, not H
                pick = w.argmax(-1, keepdim=True)
                cams, w = [c.gather(1, pick) for c in cams], w.gather(1, pick)
            losses = hypothesis_losses(net, latent, t_rgb, t_mask, pixels, *cams,
                                       data.intrinsics, cfg, cfg.model.n_samples)
            loss = (w * losses).sum(-1).mean()
        if rehearsal is not None:
            synthetic = pretrain_loss(net, next(rehearsal[0]), rehearsal[1],
                                              cfg)["loss"]
            record["rehearsal_loss"] = float(synthetic.detach())
            loss = loss + s.rehearsal * synthetic
    record["grad_norm"] = float(optimiser_step(loss, optimizer, scaler,
                                               net.reconstruction_parameters(),
                                               cfg.optim.grad_clip, runtime=runtime))
    record["network_loss"] = float(loss.detach())
    return record


@torch.no_grad()
def choose_hypotheses(net: ReconstructionNet, data: Collection, cfg: ExperimentConfig,
                      runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's chosen hypothesis ``(N,)`` by the configured rule, and by weight ``(N,)``."""
    by_weight = data.bank.weights().argmax(-1)
    if cfg.selftrain.select == "weights":
        return by_weight, by_weight
    losses = torch.zeros(len(data.bank), data.bank.hypotheses)
    for batch in data.batches():
        idx = batch["index"]
        images, masks = batch["image"].to(runtime.device), batch["mask"].to(runtime.device)
        losses[idx] = selection_losses(net, net.encode(images), images, masks, data.bank, idx,
                                       cfg, data.prior).cpu()
    return runtime.all_sum(losses).argmin(-1), by_weight


@torch.no_grad()
def chosen_mask_iou(net: ReconstructionNet, data: Collection, chosen: torch.Tensor,
                    cfg: ExperimentConfig, runtime: Runtime) -> torch.Tensor:
    """Mask IoU ``(N,)`` of every image's full render from its chosen camera."""
    ious = torch.zeros(len(data.bank))
    for batch in data.batches():
        latent = net.encode(batch["image"].to(runtime.device))
        rendered = render_chosen(net, latent, data.bank, batch["index"], chosen,
                                 data.intrinsics, cfg)
        ious[batch["index"]] = mask_iou(rendered["mask"].cpu(), batch["mask"][:, 0])
    return runtime.all_sum(ious)


@torch.no_grad()
def hypotheses_figure(net: ReconstructionNet, data: Collection, chosen: torch.Tensor,
                      cfg: ExperimentConfig, device: torch.device, step: int) -> plt.Figure:
    """The first four images: input, render and mask from the chosen camera, weights, and the
    figure views (:data:`ss3d.cameras.FIGURE_POSES`)."""
    fixed = torch.arange(min(4, len(data.dataset)))
    items = [data.dataset[int(i)] for i in fixed]
    images = torch.stack([b["image"] for b in items]).to(device)
    masks = torch.stack([b["mask"] for b in items]).to(device)
    latent = net.encode(images)
    rendered = render_chosen(net, latent, data.bank, fixed, chosen, data.intrinsics, cfg)
    n = len(fixed)
    novel = {"rgb": torch.stack([render_network(
        lambda p: net.query(p, latent), torch.full((n,), az, device=device),
        torch.full((n,), el, device=device), torch.full((n,), FIGURE_DISTANCE, device=device),
        data.intrinsics, cfg.model)["rgb"] for az, el in FIGURE_POSES], dim=1).cpu()}
    return _figure(images, masks, rendered, data.bank.weights(fixed), novel, step)


def viewpoint_accuracy_of(prior: ViewpointPrior, data: Collection) -> float:
    """Share of the collection's images whose viewpoint-network pose alone is within 30° of the
    hidden true camera (in the true frame: the network learned the synthetic one)."""
    rows = [k for k, i in enumerate(data.bank.image_ids) if i in data.truth]
    if not rows:
        return float("nan")
    azimuth, elevation = prior.most_likely()
    truth = [data.truth[data.bank.image_ids[k]] for k in rows]
    return float(viewpoint_accuracy(azimuth[rows], elevation[rows],
                                    torch.tensor([t["azimuth"] for t in truth]),
                                    torch.tensor([t["elevation"] for t in truth])).mean())


def evaluate_epoch(net: ReconstructionNet, data: Collection, cfg: ExperimentConfig,
                   runtime: Runtime, last_choice: torch.Tensor | None
                   ) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics of the current cameras and network: mask IoU from the chosen cameras, the share
    of choices that changed since ``last_choice``, and (rendered collections) pose accuracy.

    Runs in eval mode: BatchNorm uses (and does not update) its running statistics. Returns the
    metrics and the choice ``(N,)``.
    """
    net.eval()
    try:
        chosen, by_weight = choose_hypotheses(net, data, cfg, runtime)
        metrics: dict[str, float] = {}
        if last_choice is not None:  # share of images whose chosen hypothesis changed
            metrics["best_changed"] = float((chosen != last_choice).float().mean())
        metrics["mask_iou"] = float(chosen_mask_iou(net, data, chosen, cfg, runtime).mean())
        if data.truth:
            metrics.update(pose_metrics(data.bank, data.truth, chosen))
            metrics.update(pose_metrics(data.bank, data.truth, by_weight, prefix="weights_"))
            if data.prior is not None:
                metrics["viewpoint_net_acc30"] = viewpoint_accuracy_of(data.prior, data)
    finally:
        train_mode(net)
    return metrics, chosen


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------
def selftrain_stage(cfg: ExperimentConfig, *, category: str | None = None,
                    pretrained: str | Path | None = None, collection: str | Path | None = None,
                    resume: bool | str | Path = False, progress: bool = True,
                    track: bool = True, run_tags: dict[str, str] | None = None,
                    grid_losses: torch.Tensor | None = None) -> SelftrainResult:
    """Self-train the pre-trained model on one category's image collection.

    Under ``torchrun`` each process owns every ``world``-th image (its camera hypotheses, its
    share of each global batch ``optim.batch_size``); the network's gradients are averaged and
    the camera bank is merged for evaluation and checkpoints, so a checkpoint resumes on any
    number of processes.

    ``grid_losses``: the :attr:`SelftrainResult.grid_losses` of a run on the same collection
    and pre-trained checkpoint (any H), reused instead of scoring the pose grid again.
    ``cfg`` is not changed.
    """
    cfg = copy.deepcopy(cfg)
    category = category or cfg.selftrain.category
    category = taxonomy.canonical_name(category) or category  # as validated: 'couch' -> sofa
    cfg.selftrain.category = category
    collection = Path(collection) if collection else data_paths(cfg).collection(category)
    if not collection.is_file():
        raise FileNotFoundError(f"no image collection for '{category}' at {collection}: run "
                                "notebooks/00_render.ipynb (or `ss3d render`) or `ss3d ingest` "
                                "first")
    ckpt_in, pretrain_run = find_pretrained(cfg, pretrained, track)
    saved = load_checkpoint(ckpt_in, map_location="cpu")
    # the network runs as it was pre-trained (and this run's params and checkpoints say so)
    adopted = adopt_checkpoint_model(cfg.model, saved, ckpt_in)
    if cfg.selftrain.viewpoint_weight > 0 and not cfg.model.viewpoint_net:
        raise ValueError(f"selftrain.viewpoint_weight = {cfg.selftrain.viewpoint_weight} needs a "
                         f"pre-trained model with a viewpoint network, and {ckpt_in} has none: "
                         "pre-train with model.viewpoint_net=true, or set "
                         "selftrain.viewpoint_weight=0")
    suffix = "" if not run_tags else "-" + "-".join(f"{v}" for v in run_tags.values())
    # ablation runs get their own stage tag, so later stages never take them as inputs
    run = StageRun(cfg, STAGE if not run_tags else f"{STAGE}-ablation",
                   out_dir=stage_dir(cfg, f"{STAGE}-{category}{suffix}"), track=track,
                   progress=progress, category=category, extra_tags=run_tags, seed=cfg.seed)
    runtime, device, s = run.runtime, run.device, cfg.selftrain

    data = Collection.load(collection, cfg, runtime)
    dataset, bank = data.dataset, data.bank
    expected = (len(dataset), pose_grid(cfg)[0].numel())
    if grid_losses is not None and tuple(grid_losses.shape) != expected:
        raise ValueError(f"grid_losses has shape {tuple(grid_losses.shape)}, this run needs "
                         f"{expected} (images of {collection} × grid poses)")
    if adopted:
        run.print(f"model settings taken from {ckpt_in}: " + "; ".join(adopted))
    net = _pretrained_network(saved, cfg, device)
    if s.viewpoint_weight > 0:
        data.prior = ViewpointPrior.compute(net.viewpoint, dataset, data.owned,
                                            s.viewpoint_weight, runtime)
    train_mode(net)
    optimizer = make_adam(net.reconstruction_parameters(), s.lr)
    scaler = grad_scaler(device, cfg.optim.amp)  # fp16 on CUDA only; a pass-through elsewhere
    step, start_epoch = 0, 0
    # the previous evaluation's chosen hypotheses (None before the pre-search evaluation)
    last_choice: torch.Tensor | None = None
    alignment: list[list[float]] | None = None
    history: list[dict[str, float]] = []
    epochs: list[dict[str, float]] = []
    payload = run.resume(resume, model=net, optimizer=optimizer)
    if payload is not None:
        extra = payload["extra"]
        bank.load_state_dict(extra["bank"])  # the whole bank: any number of processes resumes
        step, start_epoch = payload["step"], extra["epoch"]
        last_choice, alignment = extra.get("last_choice"), extra.get("alignment")
        history, epochs = extra["history"], extra["epochs"]
    local_batch = runtime.local_batch(cfg.optim.batch_size, len(dataset))
    # BatchNorm needs batches > 1; every rank takes the same number of steps per epoch
    loader = DataLoader(Subset(dataset, data.owned.tolist()), batch_size=local_batch,
                        shuffle=True, drop_last=True, num_workers=cfg.data.num_workers)
    steps_per_epoch = (len(dataset) // runtime.world_size) // local_batch
    # synthetic batches with known cameras mixed into phase B (None when off)
    rehearsal = _synthetic_batches(cfg, device, local_batch) if s.rehearsal > 0 else None
    result = SelftrainResult(run_id=None, checkpoint=run.checkpoint, bank=bank)

    def evaluate(epoch: int) -> None:
        nonlocal last_choice, alignment
        merge_bank(bank, data.owned, runtime)
        metrics, last_choice = evaluate_epoch(net, data, cfg, runtime, last_choice)
        if data.truth:
            g = frame_alignment(bank, data.truth, last_choice)
            alignment = None if g is None else g.tolist()
        epochs.append({"epoch": epoch, **metrics})
        run.log_metrics(metrics, step=step, prefix="epoch/")
        if run.is_main:
            net.eval()
            result.figures["hypotheses"] = hypotheses_figure(net, data, last_choice, cfg,
                                                             device, step)
            train_mode(net)
            run.log_figure(result.figures["hypotheses"], f"hypotheses/epoch_{epoch:03d}")
        pose = (f", pose acc@30 {metrics['pose_acc30']:.2f} (best-of-H "
                f"{metrics['pose_best_of_h_acc30']:.2f})") if "pose_acc30" in metrics else ""
        run.print(f"epoch {epoch}: mask IoU {metrics['mask_iou']:.3f}{pose}")

    def save(epoch: int) -> None:
        """Model, optimiser, RNG and the whole camera bank: everything a resume needs."""
        merge_bank(bank, data.owned, runtime)
        run.save(step=step, model=net, optimizer=optimizer,
                 extra={"bank": bank.state_dict(), "epoch": epoch, "history": history,
                        "epochs": epochs, "category": category, "pretrained": str(ckpt_in),
                        "last_choice": last_choice,
                        # x_learned = G x_true, from the hidden cameras (evaluation)
                        "alignment": alignment})

    with run.open(consumed=[pretrain_run]):
        if start_epoch == 0 and not epochs:
            if s.init == "grid":
                result.grid_losses = _grid_start(net, data, cfg, run, grid_losses)
            evaluate(0)  # the pre-trained starting point, before any search
        for epoch in range(start_epoch, s.epochs):
            phase_b = epoch >= s.phase_a_epochs
            bar = run.bar(total=steps_per_epoch, unit="batch",
                          desc=f"selftrain {category} epoch {epoch + 1}/{s.epochs} "
                               f"({'B' if phase_b else 'A'})")
            for batch, _ in zip(loader, range(steps_per_epoch)):
                tic = time.perf_counter()
                record = selftrain_step(net, batch, data, optimizer, scaler, cfg, runtime,
                                        phase_b, rehearsal)
                step += 1
                record.update(step=step, epoch=epoch + 1,
                              step_seconds=time.perf_counter() - tic)
                history.append(record)
                run.log_metrics(record, step=step)
                bar.update()
                bar.set_postfix(loss=f"{record['loss_after_cameras']:.4f}", refresh=False)
            bar.close()
            if (epoch + 1) % s.eval_every == 0 or epoch + 1 == s.epochs:
                evaluate(epoch + 1)
            save(epoch + 1)
        if start_epoch >= s.epochs:  # resumed with nothing left: still leave a checkpoint here
            # (decided on the loop, not on the file: save() all-reduces, and another rank
            # could see rank 0's file before or after it lands)
            save(s.epochs)
        result.figures["curves"] = curves_figure(history, epochs)
        run.log_figure(result.figures["curves"], "curves")
        _log_cameras(run, data, alignment)
    result.run_id = run.run_id
    result.history, result.epochs = history, epochs
    result.wall_seconds = run.wall_seconds
    return result


def _pretrained_network(saved: dict, cfg: ExperimentConfig,
                        device: torch.device) -> ReconstructionNet:
    """The pre-trained network of checkpoint payload ``saved``, built from
    ``cfg.model`` once :func:`adopt_checkpoint_model` has made its function fields the
    checkpoint's. The encoder's initial weights file is not read: the checkpoint has the
    weights (and a self-training node need not hold that file)."""
    net = ReconstructionNet(replace(cfg.model, pretrained_weights=""))
    net.load_state_dict(saved["model"])
    return net.to(device)


def _grid_start(net: ReconstructionNet, data: Collection, cfg: ExperimentConfig, run: StageRun,
                grid_losses: torch.Tensor | None) -> torch.Tensor:
    """:func:`initialise_from_grid` in eval mode, timed; returns the grid losses."""
    tic = time.perf_counter()
    net.eval()
    try:
        losses = initialise_from_grid(net, data.dataset, data.bank, cfg, run.runtime,
                                      data.owned, run.progress, grid_losses, data.prior)
    finally:
        train_mode(net)
    run.log_metrics({"grid_init_seconds": time.perf_counter() - tic})
    return losses


def _log_cameras(run: StageRun, data: Collection, alignment: list[list[float]] | None) -> None:
    """The final camera bank (``camera_bank.pt``) and, for rendered collections, the frame
    alignment ``G`` as artifacts of the run."""
    merge_bank(data.bank, data.owned, run.runtime)
    if run.is_main and run.out_dir is not None:
        torch.save(data.bank.state_dict(), run.out_dir / "camera_bank.pt")
        run.log_artifact(run.out_dir / "camera_bank.pt", "cameras")
    if alignment is not None:
        run.log_dict({"G": alignment, "convention": "x_learned = G x_true (column vectors), "
                      "from the hidden cameras; evaluation only"}, "cameras/alignment.json")


ABLATION_TAG = "ss3d.ablation"


def single_hypothesis_ablation(cfg: ExperimentConfig, reference: SelftrainResult, *,
                               pretrained: str | Path | None = None, progress: bool = True,
                               track: bool = True) -> SelftrainResult:
    """The H = 1 ablation of ``reference`` (a multi-hypothesis run of ``cfg``): the same data,
    pre-trained model and budget with one camera per image, logged as stage
    ``selftrain-ablation`` so later stages never take it as a teacher. Reuses the reference's
    pose-grid scores, which do not depend on H. ``cfg`` is not changed."""
    single = copy.deepcopy(cfg)
    single.selftrain.hypotheses = 1
    return selftrain_stage(single, pretrained=pretrained, progress=progress, track=track,
                           run_tags={ABLATION_TAG: "H1"}, grid_losses=reference.grid_losses)
