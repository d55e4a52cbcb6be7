"""Scoring poses and camera hypotheses: the method's math below the stages (README:
Self-training).

Self-training, the texture painter and ``ss3d reconstruct`` all ask one question — how well
does a network's field, seen from a camera, explain an image? — and answer it here, with one
loss (:func:`render_loss`) rendered through :mod:`ss3d.volume`:

* :func:`hypothesis_losses` — the loss of every hypothesis of every image on a few sampled
  rays, in one batched render (the camera search and phase B's network update);
* :func:`image_losses` / :func:`pose_scores` — the low-noise loss of whole downsampled images
  (the pose grid, the logit update, the choice), plus the viewpoint prior's penalty;
* :func:`field_image_losses` — the same for any field and one target image (the input camera
  of a reconstruction);
* :func:`pose_grid`, :func:`network_weights`, :class:`ViewpointPrior`, and the ray sampling
  (:func:`sample_image_pixels`, :func:`network_pixels`, :func:`gather_targets`).

Nothing here knows about runs, checkpoints or epochs: that is ``ss3d.stages.selftrain``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from ss3d.cameras import Intrinsics, sample_pixels
from ss3d.config import ExperimentConfig
from ss3d.engine import Runtime, autocast
from ss3d.hypotheses import CameraBank
from ss3d.model import ReconstructionNet, ViewpointNet
from ss3d.volume import Field, mixed_precision, render_network, render_pixels

if TYPE_CHECKING:  # the datasets import the renderer (pyrender): not needed to score poses
    from ss3d.data.datasets import ImageCollection

__all__ = ["ViewpointPrior", "aligned_pose_scores", "box_centres", "field_image_losses",
           "field_image_scores", "gather_targets", "hypothesis_losses", "image_losses",
           "image_scores", "network_pixels", "network_weights", "pose_grid", "pose_scores",
           "render_loss", "sample_image_pixels", "selection_losses", "shift_images"]


# ----------------------------------------------------------------------------------------------
# The loss, and the rays it is scored on
# ----------------------------------------------------------------------------------------------
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


def sample_image_pixels(masks: torch.Tensor, count: int, foreground_fraction: float = 0.5
                        ) -> torch.Tensor:
    """``(B, count, 2)`` pixel centres of ``masks (B, 1, H, W)``, ``foreground_fraction`` of
    them on the mask (half of them for the camera search, which only compares poses)."""
    return sample_pixels(masks[:, 0], count, foreground_fraction=foreground_fraction)[1]


def network_pixels(masks: torch.Tensor, cfg: ExperimentConfig) -> torch.Tensor:
    """Phase B's rays: ``selftrain.rays_per_image`` pixel centres ``(B, R, 2)`` of ``masks
    (B, 1, H, W)``, drawn as pre-training draws its rays (``pretrain.foreground_fraction``).

    The ray distribution sets how foreground and background errors are traded, i.e. where the
    learned surface sits: fine-tuning with another one moves the surface that pre-training
    calibrated (docs/results.md has the measurement).
    """
    return sample_image_pixels(masks, cfg.selftrain.rays_per_image,
                               cfg.pretrain.foreground_fraction)


def gather_targets(images: torch.Tensor, masks: torch.Tensor,
                   pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets at ``pixels (B, R, 2)`` of ``images (B, 3, H, W)``, ``masks (B, 1, H, W)``:
    rgb ``(B, R, 3)`` and mask ``(B, R)``."""
    b, _, h, w = images.shape
    idx = (pixels[..., 1].long() * w + pixels[..., 0].long())
    rgb = images.reshape(b, 3, -1).gather(2, idx[:, None].expand(b, 3, -1)).transpose(1, 2)
    mask = masks.reshape(b, -1).gather(1, idx)
    return rgb, mask


# ----------------------------------------------------------------------------------------------
# Few-ray scores of every hypothesis (camera search, network update)
# ----------------------------------------------------------------------------------------------
def hypothesis_losses(net: ReconstructionNet, latent: torch.Tensor, target_rgb: torch.Tensor,
                      target_mask: torch.Tensor, pixels: torch.Tensor, azimuth: torch.Tensor,
                      elevation: torch.Tensor, distance: torch.Tensor, intrinsics: Intrinsics,
                      cfg: ExperimentConfig, n_samples: int,
                      offset: torch.Tensor | None = None) -> torch.Tensor:
    """Render loss of every hypothesis of every image, in one batched render.

    Args:
        latent: ``(B, L)``. target_rgb ``(B, R, 3)``, target_mask ``(B, R)``, pixels ``(B, R, 2)``.
        azimuth, elevation, distance: ``(B, H)`` cameras; offset ``(B, H, 2)`` their
            principal-point shifts (None: centred).

    Returns:
        ``(B, H)`` weighted mask + colour MSE of each hypothesis.
    """
    b, h = azimuth.shape
    # one FiLM set per camera (B·H of them), broadcast over its R·S points; the network in
    # mixed precision where it pays (query returns fp32, so compositing stays fp32)
    latents = latent.repeat_interleave(h, 0)
    field = mixed_precision(lambda p: net.query(p, latents), latent.device, cfg.optim.amp)
    out = render_pixels(field, azimuth.reshape(-1), elevation.reshape(-1), distance.reshape(-1),
                        intrinsics, cfg.model, pixels.repeat_interleave(h, 0), n_samples,
                        stratified=True, offset=None if offset is None else offset.reshape(-1, 2))
    return render_loss(out["mask"], out["rgb"], target_mask.repeat_interleave(h, 0),
                       target_rgb.repeat_interleave(h, 0), cfg).reshape(b, h)


# ----------------------------------------------------------------------------------------------
# Full-image scores (pose grid, logits, choice, input camera of a reconstruction)
# ----------------------------------------------------------------------------------------------
def downsampled(images: torch.Tensor, masks: torch.Tensor, resolution: int) -> torch.Tensor:
    """``(B, 4, r, r)``: RGB and mask area-downsampled to ``r = min(resolution, S)`` (never
    upsampled: that adds rays, not detail)."""
    resolution = min(resolution, images.shape[-1])
    return F.interpolate(torch.cat([images, masks], 1).float(), size=resolution, mode="area")


def box_centres(masks: torch.Tensor) -> torch.Tensor:
    """Centres ``(K, 2)`` ``(u, v)`` of the boxes of ``masks (K, r, r)`` (pixels above 0.5),
    in fractions of the side; an empty mask's is the image centre."""
    inside = masks > 0.5
    size = masks.shape[-1]
    centres = []
    for axis in (-2, -1):  # any() over rows gives the columns (u), over columns the rows (v)
        hit = inside.any(axis).float()  # (K, r)
        coords = torch.arange(size, device=masks.device, dtype=torch.float32)
        first = torch.where(hit > 0, coords, float(size)).amin(-1)
        last = torch.where(hit > 0, coords, -1.0).amax(-1)
        centres.append(torch.where(last >= first, (first + last + 1) / (2 * size), 0.5))
    return torch.stack(centres, -1)


def shift_images(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``images (K, C, r, r)`` moved by ``shift (K, 2)`` (fractions of the side, ``(du, dv)``),
    bilinear, zero where nothing was.

    A principal-point shift moves a render and changes nothing else, so a render moved here is
    the render of the camera with that offset, short of what the shift brings in from outside
    the frame (nothing, for an object that was inside it). Scoring every grid camera with the
    offset that meets the target's box therefore costs no second render.
    """
    k = images.shape[0]
    # affine_grid maps output to input coordinates in [-1, 1] (a side is 2 units)
    theta = torch.zeros(k, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = -2.0 * shift.to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


@torch.no_grad()
def field_image_scores(field: Field, azimuth: torch.Tensor, elevation: torch.Tensor,
                       distance: torch.Tensor, target: torch.Tensor, intrinsics: Intrinsics,
                       cfg: ExperimentConfig, n_samples: int, offset: torch.Tensor | None = None,
                       align: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`render_loss` ``(P,)`` of ``P`` cameras (``(P,)`` each, principal-point
    ``offset (P, 2)``) of ``field`` against one :func:`downsampled` ``target (4, r, r)``; every
    pixel is a ray.

    With ``align``, each render is first moved so that its box centre meets the target's
    (:func:`shift_images`), and the offsets that do it ``(P, 2)`` (added to ``offset``) are
    returned beside the losses; otherwise the second value is None.
    """
    rendered = render_network(field, azimuth, elevation, distance, intrinsics, cfg.model,
                              n_samples, offset=offset)
    mask, rgb = rendered["mask"], rendered["rgb"]
    moved = None
    if align:
        moved = box_centres(target[3][None]) - box_centres(mask)  # (P, 2)
        both = shift_images(torch.cat([mask[:, None], rgb.permute(0, 3, 1, 2)], 1), moved)
        mask, rgb = both[:, 0], both[:, 1:].permute(0, 2, 3, 1)
        if offset is not None:
            moved = moved + offset.to(moved)
    return render_loss(mask, rgb, target[3], target[:3].permute(1, 2, 0), cfg), moved


def field_image_losses(field: Field, azimuth: torch.Tensor, elevation: torch.Tensor,
                       distance: torch.Tensor, target: torch.Tensor, intrinsics: Intrinsics,
                       cfg: ExperimentConfig, n_samples: int,
                       offset: torch.Tensor | None = None) -> torch.Tensor:
    """The losses ``(P,)`` of :func:`field_image_scores` at fixed cameras."""
    return field_image_scores(field, azimuth, elevation, distance, target, intrinsics, cfg,
                              n_samples, offset)[0]


@torch.no_grad()
def image_scores(net: ReconstructionNet, latents: torch.Tensor, images: torch.Tensor,
                 masks: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor,
                 distance: torch.Tensor, cfg: ExperimentConfig, resolution: int,
                 n_samples: int, offset: torch.Tensor | None = None, align: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Full-image render loss of ``P`` cameras per image, at a low resolution: ``(B, P)``, and
    with ``align`` the offsets ``(B, P, 2)`` that meet each image's box
    (:func:`field_image_scores`; None without).

    Args:
        latents: ``(B, L)``; images ``(B, 3, S, S)``, masks ``(B, 1, S, S)``.
        azimuth, elevation, distance: ``(B, P)`` (or ``(P,)``, the same cameras for every image);
            offset: ``(B, P, 2)`` principal-point shifts (None: centred).

    The targets are the images area-downsampled to ``resolution``, and every pixel is a ray: the
    loss has none of the sampling noise of the few-ray camera search, which choosing among
    poses needs (docs/results.md has the measurement).
    """
    small = downsampled(images, masks, resolution)
    intrinsics = Intrinsics.from_fov(cfg.render.fov_degrees, small.shape[-1])
    out, moved = [], []
    for i in range(latents.shape[0]):  # one image's P cameras per render bounds the memory
        cams = [c.to(latents.device) if c.dim() == 1 else c[i].to(latents.device)
                for c in (azimuth, elevation, distance)]
        shift = None if offset is None else offset[i].to(latents.device)
        latent = latents[i:i + 1]
        with autocast(latents.device, cfg.optim.amp):  # the network only: query returns fp32
            losses, found = field_image_scores(
                lambda p, latent=latent: net.query(p, latent.expand(p.shape[0], -1)), *cams,
                small[i], intrinsics, cfg, n_samples, shift, align)
        out.append(losses)
        moved.append(found)
    return torch.stack(out), torch.stack(moved) if align else None


def image_losses(net: ReconstructionNet, latents: torch.Tensor, images: torch.Tensor,
                 masks: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor,
                 distance: torch.Tensor, cfg: ExperimentConfig, resolution: int,
                 n_samples: int, offset: torch.Tensor | None = None) -> torch.Tensor:
    """The losses ``(B, P)`` of :func:`image_scores` at fixed cameras."""
    return image_scores(net, latents, images, masks, azimuth, elevation, distance, cfg,
                        resolution, n_samples, offset)[0]


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
                index: torch.Tensor | None = None, offset: torch.Tensor | None = None
                ) -> torch.Tensor:
    """What poses are compared on (the logit update, the choice): the :func:`image_losses` of
    the images ``index`` (cameras with principal-point ``offset (B, P, 2)``), plus the pose
    ``prior``'s penalty when ``selftrain.viewpoint_weight > 0``. ``(B, P)``."""
    return aligned_pose_scores(net, latents, images, masks, azimuth, elevation, distance, cfg,
                               resolution, n_samples, prior, index, offset, align=False)[0]


def aligned_pose_scores(net: ReconstructionNet, latents: torch.Tensor, images: torch.Tensor,
                        masks: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor,
                        distance: torch.Tensor, cfg: ExperimentConfig, resolution: int,
                        n_samples: int, prior: ViewpointPrior | None = None,
                        index: torch.Tensor | None = None, offset: torch.Tensor | None = None,
                        align: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`pose_scores`, each camera scored with the offset that meets its image's box
    (:func:`image_scores` with ``align``): the scores ``(B, P)`` and those offsets
    ``(B, P, 2)`` (None without ``align``). How the pose grid starts a bank with offsets."""
    losses, moved = image_scores(net, latents, images, masks, azimuth, elevation, distance,
                                 cfg, resolution, n_samples, offset, align)
    if prior is None or prior.weight <= 0:
        return losses, moved
    return losses + prior.penalty(index, azimuth, elevation).to(losses), moved


def selection_losses(net: ReconstructionNet, latent: torch.Tensor, images: torch.Tensor,
                     masks: torch.Tensor, bank: CameraBank, index: torch.Tensor,
                     cfg: ExperimentConfig, prior: ViewpointPrior | None = None
                     ) -> torch.Tensor:
    """Low-noise per-hypothesis scores of images ``index`` for choosing among them: ``(B, H)``."""
    s = cfg.selftrain
    return pose_scores(net, latent, images, masks, *bank.cameras(index), cfg,
                       s.selection_size, s.camera_samples, prior, index, bank.offsets(index))


# ----------------------------------------------------------------------------------------------
# The pose grid, and the network update's weights
# ----------------------------------------------------------------------------------------------
def pose_grid(cfg: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The coarse pose grid of ``selftrain.init=grid``: azimuth, elevation, distance, each
    ``(P,)`` with ``P = grid_azimuths · len(grid_elevations) · len(grid_distances)``."""
    s = cfg.selftrain
    azimuth = torch.arange(s.grid_azimuths, dtype=torch.float32) * (360.0 / s.grid_azimuths)
    a, e, d = torch.meshgrid(azimuth, torch.tensor(s.grid_elevations, dtype=torch.float32),
                             torch.tensor(s.grid_distances, dtype=torch.float32), indexing="ij")
    return a.reshape(-1), e.reshape(-1), d.reshape(-1)


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
