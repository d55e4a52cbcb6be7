"""What the evaluation scores: the test items, each an input image with its ground truth.

* ``synthetic``: held-out (test split) models of every pre-training category and of the
  held-out (zero-shot) categories, input = view 0, ground truth = surface and inside/outside
  samples and novel views from the renders;
* ``collection``: test images of the rendered collections, ground truth = the hidden model's
  mesh (3D).

Where the data lies is passed in (a :class:`DataLayout`, e.g. the data stage's ``DataPaths``):
this module reads the data, it does not decide where it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import torch

from ss3d.cameras import Intrinsics
from ss3d.config import SYNSETS, ExperimentConfig
from ss3d.data.datasets import ImageCollection, read_hidden_cameras
from ss3d.data.shapenet import load_model
from ss3d.geometry import merge_meshes, occupancy, sample_surface

__all__ = ["DataLayout", "EvalItem", "collection_items", "synthetic_items"]

log = logging.getLogger(__name__)


class DataLayout(Protocol):
    """Where the data lies: the ShapeNet-layout models, the data root (collection models under
    ``collection_models/``) and each collection's file."""

    root: Path
    shapenet: Path

    def collection(self, name: str) -> Path: ...


@dataclass
class EvalItem:
    """One test input with its ground truth (all in the true object frame).

    image ``(3, S, S)`` masked RGB; surface ``(P, 3)``; volume_points ``(Q, 3)`` and
    volume_inside ``(Q,)``; novel: azimuth/elevation/distance ``(n,)``, masks ``(n, H, W)``,
    rgb ``(n, H, W, 3)`` (synthetic only); mask ``(S, S)``: the input's object mask;
    input_camera: the input view's known ``(azimuth, elevation, distance)`` (renders only: a
    photo's is searched, :func:`ss3d.eval.texture.input_view_camera`).
    """

    set: str
    category: str
    key: str
    image: torch.Tensor
    surface: torch.Tensor
    volume_points: torch.Tensor
    volume_inside: torch.Tensor
    mesh_path: Path | None
    zero_shot: bool = False
    novel: dict[str, torch.Tensor] | None = None
    mask: torch.Tensor | None = None
    input_camera: tuple[float, float, float] | None = None


def _mesh_path(root: Path, category: str, model_id: str) -> Path:
    return root / SYNSETS.get(category, category) / model_id / "models" / "model_normalized.obj"


def synthetic_items(cfg: ExperimentConfig, renders: Path, paths: DataLayout,
                    split: str = "test") -> tuple[list[EvalItem], Intrinsics]:
    """The first ``evaluate.models_per_category`` models of ``split`` (the test split; "val"
    to choose a setting without looking at it) of every pre-training and held-out category in
    ``renders`` (their meshes under ``paths.shapenet``)."""
    e = cfg.evaluate
    items: list[EvalItem] = []
    shapenet = paths.shapenet
    with h5py.File(renders, "r") as f:
        n = int(f.attrs["complete_models"])
        cats = f["category"].asstr()[:n]
        splits = f["split"].asstr()[:n]
        ids = f["model_id"].asstr()[:n]
        size = int(f.attrs["image_size"])
        intrinsics = Intrinsics(focal=float(f.attrs["focal"]), width=size, height=size,
                                cx=float(f.attrs["cx"]), cy=float(f.attrs["cy"]))
        views = min(e.novel_views, int(f.attrs["views_per_model"]) - 1)
        for category in [*cfg.data.categories, *cfg.data.heldout_categories]:
            rows = np.flatnonzero((cats == category) & (splits == split))[:e.models_per_category]
            if len(rows) == 0:
                log.warning("%s: no %s models of %s", renders, split, category)
            for r in rows:
                rgb = torch.from_numpy(f["rgb"][r]).float() / 255.0  # (V, H, W, 3)
                mask = torch.from_numpy(f["mask"][r]).float()
                masked = rgb * mask[..., None]
                novel = {k: torch.from_numpy(f[k][r][1:views + 1]).float()
                         for k in ("azimuth", "elevation", "distance")}
                novel.update(masks=mask[1:views + 1], rgb=masked[1:views + 1])
                items.append(EvalItem(
                    "synthetic", category, str(ids[r]), masked[0].permute(2, 0, 1).contiguous(),
                    torch.from_numpy(f["surface_points"][r]).float(),
                    torch.from_numpy(f["volume_points"][r]).float(),
                    torch.from_numpy(f["volume_occupancy"][r]).bool(),
                    _mesh_path(shapenet, category, str(ids[r])),
                    zero_shot=category in cfg.data.heldout_categories, novel=novel,
                    mask=mask[0], input_camera=tuple(
                        float(f[k][r][0]) for k in ("azimuth", "elevation", "distance"))))
    return items, intrinsics


def collection_items(cfg: ExperimentConfig, paths: DataLayout
                     ) -> tuple[list[EvalItem], list[str]]:
    """Test images of rendered collections whose hidden model meshes are on disk."""
    e = cfg.evaluate
    items: list[EvalItem] = []
    notes: list[str] = []
    for category in cfg.data.collections:
        path = paths.collection(category)
        truth = read_hidden_cameras(path) if path.is_file() else None
        if not truth or e.collection_images == 0:
            notes.append(f"collection {category}: no 3D ground truth (real photos or missing)")
            continue
        ds = ImageCollection(path, split="test")
        for i in range(min(e.collection_images, len(ds))):
            item = ds[i]
            model_id = truth[item["image_id"]]["model_id"]
            mesh_path = _mesh_path(paths.root / "collection_models", category, model_id)
            if not mesh_path.is_file():
                notes.append(f"collection {category}: mesh {mesh_path} missing")
                break
            mesh = merge_meshes(load_model(mesh_path))
            rng = np.random.default_rng(i)
            uniform = rng.uniform(-0.55, 0.55, (cfg.render.volume_samples // 2, 3))
            near = (sample_surface(mesh, cfg.render.volume_samples // 2, seed=i)
                    + rng.normal(0, 0.02, (cfg.render.volume_samples // 2, 3)))
            points = np.concatenate([uniform, near]).astype(np.float32)
            items.append(EvalItem(
                "collection", category, item["image_id"], item["image"],
                torch.from_numpy(sample_surface(mesh, cfg.render.surface_samples, seed=i)),
                torch.from_numpy(points), torch.from_numpy(occupancy(points, mesh)),
                mesh_path, mask=item["mask"][0]))
    return items, notes
