"""Pre-training's held-out validation (README: Pre-training): the validation set, its renders
and metrics (novel views, and each input view from its own camera), and the sphere baseline.

Split from :mod:`ss3d.stages.pretrain`, which re-exports these names; the rest of pre-training
(the loss, the loop, checkpoints) lives there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from ss3d.cameras import Intrinsics
from ss3d.config import ExperimentConfig
from ss3d.data.datasets import RenderedViews, crop_like_collection
from ss3d.eval.baselines import mean_object_radius, sphere_field
from ss3d.hypotheses import viewpoint_accuracy
from ss3d.image_metrics import colour_spread, mask_iou, psnr
from ss3d.volume import render_network

__all__ = ["ValidationSet", "render_validation", "sphere_baseline", "validation_metrics"]


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
