"""Stage 2: category-specific self-training with multi-hypothesis cameras (README: Self-training).

Before the first epoch (``selftrain.init=grid``, the default) every image's hypotheses start at
the best poses of a coarse grid, one per azimuth sector, scored with the pre-trained network;
``init=spread`` is the paper's random elevation and distance per sector.

Each training step, for a batch of images (input and target at once):
1. encode the images (latent detached for 2–3);
2. optimise every hypothesis' camera for ``n_cam_iters`` Adam steps on its own render loss,
   network frozen — all ``B × H`` cameras in one batched render;
3. update the hypothesis logits on the softmax-weighted per-hypothesis loss, scored on the
   whole (downsampled) image so that the weights follow the poses, not the ray noise;
4. (phase B only) update the network on the softmax-weighted loss, weights detached.

The encoder's BatchNorm statistics stay frozen throughout (:func:`train_mode`).

The chosen pose of an image is its highest-weight hypothesis (``selftrain.select=weights``, the
paper) or its lowest full-image loss at ``selection_resolution`` (``select=loss``, the default:
in our measurements a low-noise loss picked better). Both are logged, with best-of-H,
against the hidden true cameras of rendered collections — for evaluation only, never for
training.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from ss3d import tracking
from ss3d.cameras import Intrinsics, pixel_rays
from ss3d.config import ExperimentConfig, to_dict
from ss3d.data import taxonomy
from ss3d.data.datasets import ImageCollection, read_hidden_cameras
from ss3d.engine import (
    autocast,
    grad_scaler,
    init_distributed,
    load_checkpoint,
    make_adam,
    move_batch,
    optimiser_step,
    save_checkpoint,
    seed_everything,
)
from ss3d.hypotheses import CameraBank, frame_alignment, pose_metrics
from ss3d.metrics import mask_iou
from ss3d.model import ReconstructionNet
from ss3d.stages.data import data_paths
from ss3d.stages.pretrain import endless, latest_checkpoint, stage_dir, training_views
from ss3d.stages.pretrain import render_loss as synthetic_render_loss
from ss3d.viz import finish_grid
from ss3d.volume import emission_absorption, ray_bounds, render_images, sample_along_rays

__all__ = ["SelftrainResult", "find_pretrained", "hypothesis_losses", "image_losses",
           "initialise_from_grid", "network_weights", "pose_grid", "selftrain_stage"]

log = logging.getLogger(__name__)
STAGE = "selftrain"


class MissingPretrainedError(FileNotFoundError):
    """No pre-trained checkpoint: says which notebook or command to run first."""


@dataclass
class SelftrainResult:
    run_id: str | None
    checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    bank: CameraBank | None = None
    # (N, P) losses of the pose grid under the pre-trained model: they do not depend on H, so
    # a run with other hypotheses on the same data and checkpoint (the ablation) reuses them
    grid_losses: torch.Tensor | None = None


def find_pretrained(cfg: ExperimentConfig, pretrained: str | Path | None = None,
                    track: bool = True) -> tuple[Path, str | None]:
    """The pre-trained checkpoint: ``pretrained`` if given, else the experiment's latest finished
    pre-training run in MLflow, else ``<output_dir>/<name>/pretrain/last.pt``."""
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise MissingPretrainedError(f"pretrained checkpoint not found: {path}")
        return path, None
    found = latest_checkpoint(cfg, "pretrain", track=track)
    if found is not None:
        return found
    raise MissingPretrainedError(
        f"no pre-trained model for experiment '{cfg.name}': run notebooks/01_pretrain.ipynb "
        f"(or `ss3d pretrain --config <experiment>.yaml`) first, or pass a checkpoint path "
        f"(-p pretrained PATH / --pretrained PATH)")


def _sample_pixels(masks: torch.Tensor, count: int, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """``(B, count, 2)`` pixel centres, half on the mask (where it has pixels), half uniform."""
    b, _, h, w = masks.shape
    flat = masks.reshape(b, -1)
    n_fg = count // 2
    uniform = torch.randint(0, h * w, (b, count - n_fg), generator=generator)
    probs = flat + 1e-6  # fall back to uniform for an empty mask
    fg = torch.multinomial(probs, n_fg, replacement=True, generator=generator)
    idx = torch.cat([fg, uniform], dim=1)
    return torch.stack([(idx % w).float() + 0.5, (idx // w).float() + 0.5], dim=-1)


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
                     intrinsics: Intrinsics, cfg: ExperimentConfig
                     ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """``n_cam_iters`` Adam steps on all ``B × H`` cameras with the network frozen.

    Returns the optimised raw parameters and the per-hypothesis losses before and after.
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
        for it in range(s.n_cam_iters + 1):
            pixels = _sample_pixels(masks, s.camera_rays)
            t_rgb, t_mask = _gather(images, masks, pixels)
            az, el, dist = bank.decode(*raw)
            losses = hypothesis_losses(net, latent, t_rgb, t_mask, pixels, az, el, dist,
                                       intrinsics, cfg, s.camera_samples)
            if before is None:
                before = losses.detach()
            if it == s.n_cam_iters:
                break
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
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
            rendered = render_images(lambda p, latent=latent: net.query(p, latent.expand(
                p.shape[0], -1)), *cams, intrinsics, n_samples=n_samples,
                bounds=cfg.model.ray_bounds, radius=cfg.model.object_radius)
        out.append(render_loss(rendered["mask"], rendered["rgb"], small[i, 3],
                               small[i, :3].permute(1, 2, 0), cfg))
    return torch.stack(out)


def selection_losses(net: ReconstructionNet, latent: torch.Tensor, images: torch.Tensor,
                     masks: torch.Tensor, bank: CameraBank, index: torch.Tensor,
                     cfg: ExperimentConfig) -> torch.Tensor:
    """Low-noise per-hypothesis losses of images ``index`` for choosing among them: ``(B, H)``."""
    s = cfg.selftrain
    return image_losses(net, latent, images, masks, *bank.cameras(index), cfg,
                        s.selection_resolution, s.camera_samples)


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


def _synthetic_batches(cfg: ExperimentConfig, device: torch.device):
    """Endless pre-training batches (known cameras) for phase-B rehearsal, and intrinsics."""
    renders = data_paths(cfg).renders
    if not renders.is_file():
        raise FileNotFoundError(f"selftrain.rehearsal > 0 needs the synthetic renders, not found "
                                f"at {renders} (run `ss3d render` or set rehearsal to 0)")
    views = training_views(cfg, renders)
    loader = DataLoader(views, batch_size=min(cfg.optim.batch_size, len(views)), shuffle=True,
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


def initialise_from_grid(net: ReconstructionNet, dataset: ImageCollection,
                         latents: torch.Tensor, bank: CameraBank, cfg: ExperimentConfig,
                         progress: bool = True, losses: torch.Tensor | None = None
                         ) -> torch.Tensor:
    """``selftrain.init=grid``: hypothesis ``k`` of every image becomes the grid pose of the
    ``k``-th azimuth sector that the (pre-trained) network explains best.

    The hypotheses stay spread over azimuth as in the paper, but elevation and distance are no
    longer random: on the embedded airplanes the chosen start is within 30° for 51% of the
    images (random elevation and distance: 23%).
    A sector without grid azimuths (``H > grid_azimuths``) keeps its spread hypothesis.

    Args:
        latents: ``(N, L)`` of the dataset's images, on the network's device.
        losses: ``(N, P)`` grid losses already computed with the same network and images
            (then nothing is rendered).

    Returns:
        the grid losses ``(N, P)``.
    """
    grid = pose_grid(cfg)
    h = bank.hypotheses
    sector = (grid[0] / (360.0 / h)).floor().long().clamp(max=h - 1)  # (P,)
    losses = losses if losses is not None else torch.cat([
        image_losses(net, latents[batch["index"]], batch["image"].to(latents.device),
                     batch["mask"].to(latents.device), *grid, cfg, cfg.selftrain.grid_resolution,
                     cfg.selftrain.grid_samples).cpu()
        for batch in tqdm(DataLoader(dataset, batch_size=8), desc="pose grid", unit="batch",
                          disable=not progress)])
    index = torch.arange(len(bank))
    az, el, dist = bank.cameras(index)
    for k in range(h):
        members = sector == k
        if not members.any():
            continue
        pick = losses.masked_fill(~members[None], float("inf")).argmin(-1)  # (N,)
        az[:, k], el[:, k], dist[:, k] = grid[0][pick], grid[1][pick], grid[2][pick]
    bank.set_cameras(index, az, el, dist)
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
        return render_images(lambda p: net.query(p, latent), *cams, intrinsics,
                             n_samples=cfg.model.n_samples, bounds=cfg.model.ray_bounds,
                             radius=cfg.model.object_radius)


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


def selftrain_stage(cfg: ExperimentConfig, *, category: str | None = None,
                    pretrained: str | Path | None = None, collection: str | Path | None = None,
                    resume: bool | str | Path = False, progress: bool = True,
                    track: bool = True, run_tags: dict[str, str] | None = None,
                    grid_losses: torch.Tensor | None = None) -> SelftrainResult:
    """Self-train the pre-trained model on one category's image collection.

    ``grid_losses``: the :attr:`SelftrainResult.grid_losses` of a run on the same collection
    and pre-trained checkpoint (any H), reused instead of scoring the pose grid again.
    """
    start_wall = time.perf_counter()
    category = category or cfg.selftrain.category
    category = taxonomy.canonical_name(category) or category  # as validated: 'couch' -> sofa
    cfg.selftrain.category = category
    runtime = init_distributed(cfg.optim.device)
    device = runtime.device
    seed_everything(cfg.seed)
    collection = Path(collection) if collection else data_paths(cfg).collection(category)
    if not collection.is_file():
        raise FileNotFoundError(f"no image collection for '{category}' at {collection}: run "
                                "notebooks/00_render.ipynb (or `ss3d render`) or `ss3d ingest` "
                                "first")
    ckpt_in, pretrain_run = find_pretrained(cfg, pretrained, track)
    suffix = "" if not run_tags else "-" + "-".join(f"{v}" for v in run_tags.values())
    out_dir = stage_dir(cfg, f"{STAGE}-{category}{suffix}")
    last = out_dir / "last.pt"

    dataset = ImageCollection(collection, split="train")
    truth = read_hidden_cameras(collection)  # evaluation only: never used in a loss
    s = cfg.selftrain
    bank = CameraBank(list(dataset.image_ids), s.hypotheses, tuple(s.elevation_init),
                      tuple(s.distance_range), seed=cfg.seed)
    expected = (len(dataset), pose_grid(cfg)[0].numel())
    if grid_losses is not None and tuple(grid_losses.shape) != expected:
        raise ValueError(f"grid_losses has shape {tuple(grid_losses.shape)}, this run needs "
                         f"{expected} (images of {collection} × grid poses)")
    intrinsics = Intrinsics.from_fov(cfg.render.fov_degrees, dataset.crop_size)
    net = ReconstructionNet(cfg.model).to(device)
    load_checkpoint(ckpt_in, model=net, map_location=device)
    train_mode(net)
    optimizer = make_adam(net.parameters(), s.lr)
    scaler = grad_scaler(device, cfg.optim.amp)  # fp16 on CUDA only; a pass-through elsewhere
    start_step, start_epoch, run_id = 0, 0, None
    # the previous epoch's chosen hypotheses (None before the pre-search evaluation)
    last_choice: torch.Tensor | None = None
    alignment: list[list[float]] | None = None
    history: list[dict[str, float]] = []
    epochs: list[dict[str, float]] = []
    if resume:
        payload = load_checkpoint(last if resume is True else Path(resume), model=net,
                                  optimizer=optimizer, map_location=device, restore_rng=True,
                                  stage=STAGE)
        bank.load_state_dict(payload["extra"]["bank"])
        start_step, run_id = payload["step"], payload.get("mlflow_run_id")
        start_epoch = payload["extra"]["epoch"]
        last_choice = payload["extra"].get("last_choice")
        alignment = payload["extra"].get("alignment")
        history, epochs = payload["extra"]["history"], payload["extra"]["epochs"]
    loader = DataLoader(dataset, batch_size=min(cfg.optim.batch_size, len(dataset)),
                        shuffle=True, drop_last=len(dataset) > cfg.optim.batch_size,
                        num_workers=cfg.data.num_workers)  # BatchNorm needs batches > 1
    logit_lr = s.logit_lr
    # synthetic batches with known cameras mixed into phase B (None when off)
    rehearsal = _synthetic_batches(cfg, device) if s.rehearsal > 0 else None
    result = SelftrainResult(run_id=run_id, checkpoint=last, bank=bank)
    fixed = torch.arange(min(4, len(dataset)))
    fixed_batch = [dataset[int(i)] for i in fixed]
    fixed_images = torch.stack([b["image"] for b in fixed_batch]).to(device)
    fixed_masks = torch.stack([b["mask"] for b in fixed_batch]).to(device)

    @torch.no_grad()
    def encode_all() -> torch.Tensor:
        """Latents ``(N, L)`` of every image, once per evaluation (the caller sets eval mode)."""
        return torch.cat([net.encode(b["image"].to(device)).cpu()
                          for b in DataLoader(dataset, batch_size=16)])

    def choose(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen by the configured rule, chosen by weights) for every image."""
        by_weight = bank.weights().argmax(-1)
        if s.select == "weights":
            return by_weight, by_weight
        losses = torch.zeros(len(bank), s.hypotheses)
        for batch in DataLoader(dataset, batch_size=16):
            idx = batch["index"]
            imgs, msks = batch["image"].to(device), batch["mask"].to(device)
            losses[idx] = selection_losses(net, latents[idx].to(device), imgs, msks, bank, idx,
                                           cfg).cpu()
        return losses.argmin(-1), by_weight

    def end_of_epoch(epoch: int, step: int) -> None:
        # Evaluation in eval mode: BatchNorm uses (and does not update) its running statistics.
        net.eval()
        try:
            evaluate_epoch(epoch, step)
        finally:
            train_mode(net)

    def evaluate_epoch(epoch: int, step: int) -> None:
        nonlocal last_choice, alignment
        latents = encode_all()
        chosen, by_weight = choose(latents)
        metrics: dict[str, float] = {"epoch": epoch + 1}
        if last_choice is not None:  # share of images whose chosen hypothesis changed
            metrics["best_changed"] = float((chosen != last_choice).float().mean())
        last_choice = chosen
        # mask IoU of full renders from the chosen cameras
        ious = []
        for batch in DataLoader(dataset, batch_size=16):
            rendered = render_chosen(net, latents[batch["index"]].to(device), bank,
                                     batch["index"], chosen, intrinsics, cfg)
            ious.append(mask_iou(rendered["mask"].cpu(), batch["mask"][:, 0]))
        metrics["mask_iou"] = float(torch.cat(ious).mean())
        if truth:
            metrics.update(pose_metrics(bank, truth, chosen))
            metrics.update(pose_metrics(bank, truth, by_weight, prefix="weights_"))
            g = frame_alignment(bank, truth, chosen)
            alignment = None if g is None else g.tolist()
        epochs.append(metrics)
        if track:
            tracking.log_metrics({f"epoch/{k}": v for k, v in metrics.items() if k != "epoch"},
                               step=step)
        latent = latents[fixed].to(device)
        rendered = render_chosen(net, latent, bank, fixed, chosen, intrinsics, cfg)
        with torch.no_grad():
            novel = {"rgb": torch.stack([render_images(
                lambda p: net.query(p, latent), torch.full((len(fixed),), az, device=device),
                torch.full((len(fixed),), 20.0, device=device),
                torch.full((len(fixed),), 2.0, device=device), intrinsics,
                n_samples=cfg.model.n_samples, bounds=cfg.model.ray_bounds,
                radius=cfg.model.object_radius)["rgb"]
                for az in (0.0, 90.0, 180.0)], dim=1).cpu()}
        fig = _figure(fixed_images, fixed_masks, rendered, bank.weights(fixed), novel, step)
        result.figures["hypotheses"] = fig
        if track:
            tracking.log_figure(fig, f"hypotheses/epoch_{epoch + 1:03d}", close=False)
        if progress:
            pose = (f", pose acc@30 {metrics['pose_acc30']:.2f} (best-of-H "
                    f"{metrics['pose_best_of_h_acc30']:.2f})") if truth else ""
            print(f"epoch {epoch + 1}: mask IoU {metrics['mask_iou']:.3f}{pose}", flush=True)

    def train() -> None:
        step = start_step
        if start_epoch == 0 and not epochs:
            if s.init == "grid":
                tic = time.perf_counter()
                net.eval()
                try:
                    result.grid_losses = initialise_from_grid(
                        net, dataset, encode_all().to(device), bank, cfg, progress, grid_losses)
                finally:
                    train_mode(net)
                if track:
                    mlflow.log_metric("grid_init_seconds", time.perf_counter() - tic)
            end_of_epoch(-1, 0)  # the pre-trained starting point, before any search
            epochs[-1]["epoch"] = 0
        for epoch in range(start_epoch, s.epochs):
            phase_b = epoch >= s.stage_one_epochs
            bar = tqdm(loader, desc=f"selftrain {category} epoch {epoch + 1}/{s.epochs} "
                       f"({'B' if phase_b else 'A'})", disable=not progress, unit="batch")
            for batch in bar:
                tic = time.perf_counter()
                idx = batch["index"]
                images, masks = batch["image"].to(device), batch["mask"].to(device)
                with torch.no_grad():
                    latent = net.encode(images)
                raw, before, after = optimise_cameras(net, latent, images, masks,
                                                      list(bank.raw(idx)), bank, intrinsics, cfg)
                bank.set_raw(idx, raw)
                # The logits follow the low-noise full-image loss of the optimised cameras, not
                # the few-ray search loss (whose noise is as large as the gaps between poses).
                scores = image_losses(net, latent, images, masks, *bank.cameras(idx), cfg,
                                      s.grid_resolution, s.camera_samples).cpu()
                # logits: gradient step on sum_h softmax(l)_h * loss_h (losses detached), per
                # image: a batch mean would shrink every image's step by the batch size
                logits = bank.logits[idx].clone().requires_grad_(True)
                (torch.softmax(logits, -1) * scores).sum().backward()
                bank.logits[idx] = (logits - logit_lr * logits.grad).detach()
                weights = bank.weights(idx).to(device)
                record = {"loss_before_cameras": float(before.mean()),
                          "loss_after_cameras": float(after.mean()),
                          "weight_entropy": float(-(weights * weights.clamp(min=1e-9).log())
                                                  .sum(-1).mean())}
                update_network = phase_b
                if phase_b:
                    target = network_weights(scores, weights.detach().cpu(), s.network_target,
                                             s.gate_margin).to(device)
                    rows = (target.sum(-1) > 0).nonzero()[:, 0]
                    record["network_images"] = float(len(rows))
                    # every image ambiguous and no rehearsal: no network update this step
                    update_network = len(rows) > 0 or rehearsal is not None
                if update_network:
                    with autocast(device, cfg.optim.amp):
                        loss = torch.zeros((), device=device)
                        if len(rows):
                            latent = net.encode(images[rows])
                            pixels = _sample_pixels(masks[rows], s.rays_per_image)
                            t_rgb, t_mask = _gather(images[rows], masks[rows], pixels)
                            cams = bank.decode(*(r.to(device)[rows] for r in raw))
                            w = target[rows]
                            if s.network_target == "chosen":  # one render per image, not H
                                pick = w.argmax(-1, keepdim=True)
                                cams, w = [c.gather(1, pick) for c in cams], w.gather(1, pick)
                            losses = hypothesis_losses(net, latent, t_rgb, t_mask, pixels,
                                                       *cams, intrinsics, cfg,
                                                       cfg.model.n_samples)
                            loss = (w * losses).sum(-1).mean()
                        if rehearsal is not None:
                            synthetic = synthetic_render_loss(net, next(rehearsal[0]),
                                                              rehearsal[1], cfg)["loss"]
                            record["rehearsal_loss"] = float(synthetic.detach())
                            loss = loss + s.rehearsal * synthetic
                    optimiser_step(loss, optimizer, scaler, net.parameters(),
                                   cfg.optim.grad_clip)
                    record["network_loss"] = float(loss.detach())
                step += 1
                record.update(step=step, epoch=epoch + 1,
                              step_seconds=time.perf_counter() - tic)
                history.append(record)
                if track:
                    tracking.log_metrics({k: v for k, v in record.items()
                                        if k not in ("step", "epoch")}, step=step)
                bar.set_postfix(loss=f"{record['loss_after_cameras']:.4f}", refresh=False)
            if (epoch + 1) % s.eval_every == 0 or epoch + 1 == s.epochs:
                end_of_epoch(epoch, step)
            checkpoint(step, epoch + 1)
        if not last.exists():
            checkpoint(step, s.epochs)

    def checkpoint(step: int, epoch: int) -> None:
        """Model, optimiser, RNG and the camera bank: everything a resume needs."""
        save_checkpoint(last, stage=STAGE, step=step, config=to_dict(cfg), model=net,
                        optimizer=optimizer, mlflow_run_id=result.run_id,
                        extra={"bank": bank.state_dict(), "epoch": epoch, "history": history,
                               "epochs": epochs, "category": category,
                               "pretrained": str(ckpt_in), "last_choice": last_choice,
                               # x_learned = G x_true, from the hidden cameras (evaluation)
                               "alignment": alignment})

    if track:
        consumed = [pretrain_run] if pretrain_run else []
        # ablation runs get their own stage tag, so later stages never take them as inputs
        stage = STAGE if not run_tags else f"{STAGE}-ablation"
        with tracking.start_run(cfg, stage, category=category, consumed=consumed,
                                run_id=run_id, extra_tags=run_tags) as run:
            result.run_id = run.info.run_id
            train()
            torch.save(bank.state_dict(), out_dir / "camera_bank.pt")
            tracking.log_artifact(out_dir / "camera_bank.pt", "cameras")
            if alignment is not None:
                mlflow.log_dict({"G": alignment, "convention": "x_learned = G x_true (column "
                                 "vectors), from the hidden cameras; evaluation only"},
                                "cameras/alignment.json")
            tracking.log_checkpoint(last)
            mlflow.log_metric("wall_seconds", time.perf_counter() - start_wall)
    else:
        train()
    result.history, result.epochs = history, epochs
    result.wall_seconds = time.perf_counter() - start_wall
    return result


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
