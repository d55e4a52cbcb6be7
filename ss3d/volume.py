"""Differentiable emission-absorption volume rendering (README: Pre-training).

Small composable parts in the spirit of PyTorch3D's ``renderer/implicit``:

* :func:`ray_bounds` — each ray's sampling interval: its segment inside the object cube, or
  ``[dist - r, dist + r]`` as in the paper;
* :func:`sample_along_rays` — ``S`` depths per ray in that interval (bin centres, or
  stratified while training) and the 3D points there;
* :func:`emission_absorption` — weights, mask, colour and depth from densities and colours;
* :func:`render_rays` — both around a *field*: any callable ``points (B, N, 3) ->
  (rgb_logits (B, N, 3), density (B, N, 1))`` such as ``lambda p: net.query(p, latent)``;
* :func:`camera_rays` — the rays of chosen pixels (or all of them) of ``B`` cameras, with the
  model config's ray bounds;
* :func:`render_pixels` — :func:`camera_rays` then :func:`render_rays`: how training renders
  the few rays of a step;
* :func:`render_images` / :func:`render_network` — full images in chunks of rays, for figures,
  validation and the full-image scores;
* :func:`mixed_precision` — a field that runs in the autocast dtype (the fused layers return
  fp32, so sampling and compositing stay fp32 around it).

Every stage renders through these functions: sampling, the field query and compositing are
written once, here. ``emission_absorption`` is called nowhere else.

We write the raymarcher by hand rather than use PyTorch3D's ``EmissionAbsorptionRaymarcher``
because it folds the ray-length deltas into the densities itself and expects opacities in
[0, 1]; our densities are unbounded (``relu(scale · raw)``) and the alpha is ``1 - exp(-σ δ)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch

from ss3d.cameras import Intrinsics, pixel_rays
from ss3d.engine import autocast
from ss3d.model import CUBE_HALF

if TYPE_CHECKING:
    from ss3d.config import ModelConfig

__all__ = [
    "Field", "Rays", "camera_rays", "emission_absorption", "mixed_precision", "ray_bounds",
    "render_images", "render_network", "render_pixels", "render_rays", "sample_along_rays",
]

Field = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Rays(NamedTuple):
    """``B`` batches of ``R`` rays: ``origins, directions (B, R, 3)``, ``near, far (B, R)``."""

    origins: torch.Tensor
    directions: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor


def mixed_precision(field: Field, device: torch.device, enabled: bool = True) -> Field:
    """``field`` run under :func:`ss3d.engine.autocast` (bf16 or fp16 where it pays): only the
    network's layers change precision; the rays before and the compositing after stay as the
    caller runs them."""
    def run(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(device, enabled):
            return field(points)
    return run


def sample_along_rays(origins: torch.Tensor, directions: torch.Tensor, near: torch.Tensor,
                      far: torch.Tensor, n_samples: int,
                      stratified: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Depths ``(B, R, S)`` and points ``(B, R, S, 3)`` along rays.

    Args:
        origins, directions: ``(B, R, 3)`` (unit directions).
        near, far: ``(B,)`` or ``(B, R)`` bounds.
        stratified: jitter each sample uniformly inside its bin (training); else bin centres.
    """
    batch, rays = origins.shape[:2]
    near = near.reshape(batch, -1, 1).expand(batch, rays, 1)
    far = far.reshape(batch, -1, 1).expand(batch, rays, 1)
    steps = torch.arange(n_samples, device=origins.device, dtype=origins.dtype)
    offset = (torch.rand(batch, rays, n_samples, device=origins.device, dtype=origins.dtype)
              if stratified else torch.full((1, 1, 1), 0.5, device=origins.device,
                                            dtype=origins.dtype))
    depths = near + (far - near) * (steps + offset) / n_samples
    points = origins[..., None, :] + depths[..., None] * directions[..., None, :]
    return depths, points


def emission_absorption(density: torch.Tensor, rgb: torch.Tensor, depths: torch.Tensor,
                        bin_size: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Composite samples front to back.

    Args:
        density: ``(B, R, S)`` non-negative densities. rgb: ``(B, R, S, 3)`` colours in [0, 1].
        depths: ``(B, R, S)`` increasing sample depths.
        bin_size: ``(B, R, 1)`` length of the last sample's interval (default: the previous
            interval), so a bounded volume never gets an infinite last delta.

    Returns:
        ``weights (B, R, S)``, ``mask (B, R)``, ``rgb (B, R, 3)`` (over a black background),
        ``depth (B, R)`` (expected depth of the visible surface, normalised by the mask).
    """
    deltas = depths[..., 1:] - depths[..., :-1]
    last = deltas[..., -1:] if bin_size is None else bin_size
    deltas = torch.cat([deltas, last], dim=-1)
    alpha = 1.0 - torch.exp(-density * deltas)
    # transmittance T_k = prod_{j<k} (1 - alpha_j), computed in log space for stability
    log_t = torch.cumsum(torch.log1p(-alpha.clamp(max=1.0 - 1e-6)), dim=-1)
    transmittance = torch.exp(torch.cat([torch.zeros_like(log_t[..., :1]), log_t[..., :-1]],
                                        dim=-1))
    weights = alpha * transmittance
    mask = weights.sum(-1)
    return {"weights": weights, "mask": mask,
            "rgb": (weights[..., None] * rgb).sum(-2),
            "depth": (weights * depths).sum(-1) / mask.clamp(min=1e-6)}


def ray_bounds(origins: torch.Tensor, directions: torch.Tensor, distance: torch.Tensor,
               mode: str = "cube", radius: float = 0.9,
               cube_half: float = CUBE_HALF) -> tuple[torch.Tensor, torch.Tensor]:
    """``near, far (B, R)`` of each ray's sampling interval.

    ``cube``: where the ray crosses ``[-cube_half, cube_half]^3`` (the density is 0 outside,
    so the integral is unchanged and the samples are about twice as dense); rays that miss
    get an empty interval at the cube's distance. ``sphere``: ``dist ± radius`` (the paper).
    ``distance`` is ``(B,)`` or ``(B, R)``.
    """
    batch, rays = origins.shape[:2]
    distance = distance.reshape(batch, -1).expand(batch, rays)
    if mode == "sphere":
        return distance - radius, distance + radius
    if mode != "cube":
        raise ValueError(f"unknown ray bounds {mode!r}")
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (-cube_half - origins) / safe
    t1 = (cube_half - origins) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(-1)
    miss = far <= near
    near = torch.where(miss, distance, near)
    far = torch.where(miss, distance + 1e-4, far)
    return near, far


def render_rays(field: Field, origins: torch.Tensor, directions: torch.Tensor,
                near: torch.Tensor, far: torch.Tensor, n_samples: int,
                stratified: bool = False) -> dict[str, torch.Tensor]:
    """Render ``(B, R)`` rays through ``field``; see :func:`emission_absorption` for outputs."""
    depths, points = sample_along_rays(origins, directions, near, far, n_samples, stratified)
    batch, rays = points.shape[:2]
    rgb_logits, density = field(points.reshape(batch, rays * n_samples, 3))
    return emission_absorption(density.reshape(batch, rays, n_samples),
                               torch.sigmoid(rgb_logits.reshape(batch, rays, n_samples, 3)),
                               depths)


def camera_rays(azimuth: torch.Tensor, elevation: torch.Tensor, distance: torch.Tensor,
                intrinsics: Intrinsics, model: ModelConfig,
                pixels: torch.Tensor | None = None, offset: torch.Tensor | None = None) -> Rays:
    """The rays of ``B`` cameras (``(B,)`` each, principal-point ``offset (B, 2)`` as in
    :func:`ss3d.cameras.pixel_rays`) through ``pixels (B, R, 2)`` (default: every pixel
    centre), bounded as ``model.ray_bounds`` / ``model.object_radius`` say."""
    origins, directions = pixel_rays(azimuth, elevation, distance, intrinsics, pixels=pixels,
                                     offset=offset)
    near, far = ray_bounds(origins, directions, distance, model.ray_bounds, model.object_radius)
    return Rays(origins, directions, near, far)


def render_pixels(field: Field, azimuth: torch.Tensor, elevation: torch.Tensor,
                  distance: torch.Tensor, intrinsics: Intrinsics, model: ModelConfig,
                  pixels: torch.Tensor, n_samples: int | None = None,
                  stratified: bool = False, offset: torch.Tensor | None = None
                  ) -> dict[str, torch.Tensor]:
    """Render the ``pixels (B, R, 2)`` of ``B`` cameras (principal-point ``offset (B, 2)``)
    through ``field`` (``model.n_samples`` per ray unless ``n_samples``): ``mask (B, R)``,
    ``rgb (B, R, 3)``, ``depth (B, R)``, ``weights (B, R, S)``."""
    return render_rays(field, *camera_rays(azimuth, elevation, distance, intrinsics, model,
                                           pixels, offset),
                       n_samples or model.n_samples, stratified)


def render_images(field: Field, azimuth: torch.Tensor,
                  elevation: torch.Tensor, distance: torch.Tensor, intrinsics: Intrinsics,
                  n_samples: int, bounds: str = "cube", radius: float = 0.9,
                  chunk_rays: int = 4096, offset: torch.Tensor | None = None
                  ) -> dict[str, torch.Tensor]:
    """Render full images for ``B`` cameras, in chunks of rays to bound memory.

    Args:
        field: the field of the ``B`` images (e.g. ``lambda p: net.query(p, latent)``).
        azimuth, elevation, distance: ``(B,)``, one camera per image.
        offset: ``(B, 2)`` principal-point shifts (:func:`ss3d.cameras.pixel_rays`).

    Returns:
        ``mask (B, H, W)``, ``rgb (B, H, W, 3)``, ``depth (B, H, W)``.
    """
    batch = azimuth.shape[0]
    origins, directions = pixel_rays(azimuth, elevation, distance, intrinsics, offset=offset)
    near, far = ray_bounds(origins, directions, distance, bounds, radius)
    outs: dict[str, list[torch.Tensor]] = {"mask": [], "rgb": [], "depth": []}
    for start in range(0, origins.shape[1], chunk_rays):
        sl = slice(start, start + chunk_rays)
        out = render_rays(field, origins[:, sl], directions[:, sl], near[:, sl], far[:, sl],
                          n_samples)
        for key in outs:
            outs[key].append(out[key])
    h, w = intrinsics.height, intrinsics.width
    return {"mask": torch.cat(outs["mask"], 1).reshape(batch, h, w),
            "rgb": torch.cat(outs["rgb"], 1).reshape(batch, h, w, 3),
            "depth": torch.cat(outs["depth"], 1).reshape(batch, h, w)}


def render_network(field: Field, azimuth: torch.Tensor, elevation: torch.Tensor,
                   distance: torch.Tensor, intrinsics: Intrinsics, model: ModelConfig,
                   n_samples: int | None = None, offset: torch.Tensor | None = None
                   ) -> dict[str, torch.Tensor]:
    """:func:`render_images` of a network's field with the model config's ray bounds, object
    radius and (unless ``n_samples`` is given) samples per ray: how every stage renders, so
    that no call can forget one of them."""
    return render_images(field, azimuth, elevation, distance, intrinsics,
                         n_samples=n_samples or model.n_samples, bounds=model.ray_bounds,
                         radius=model.object_radius, offset=offset)
