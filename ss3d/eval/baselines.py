"""Baselines that every number stands beside, scored on the test items of
:mod:`ss3d.eval.items`.

* **sphere**: a solid sphere with the mean volume of the category's training shapes (the
  training categories' mean for a zero-shot category);
* **category medoid**: the training shape with the least summed Chamfer-L1 to the others, one
  shape for every input: a model below it has not shown that it reads the image;
* **oracle nearest neighbour**: the training shape with the best F-score against each test
  item, chosen with the answer in hand: the upper bound of any retrieval method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from pytorch3d.ops import knn_points
from scipy.spatial import cKDTree

from ss3d.cameras import Intrinsics
from ss3d.config import ExperimentConfig
from ss3d.eval.items import EvalItem
from ss3d.eval.keys import ModelKey
from ss3d.eval.metrics import (
    chamfer_fscore,
    nearest_distances,
    nearest_neighbours,
    scores_from_distances,
    volumetric_iou,
)
from ss3d.eval.summary import PRIMARY
from ss3d.image_metrics import mask_iou
from ss3d.volume import render_network

__all__ = ["MEDOID", "ORACLE", "SPHERE", "Baselines", "Shapes", "baseline_rows",
           "build_baselines", "mean_object_radius", "medoid_index", "oracle_index",
           "shape_metrics", "sphere_field"]

#: The baselines' row labels ("baseline: sphere", ...).
ORACLE = ModelKey.baseline("oracle NN").label
MEDOID = ModelKey.baseline("category medoid").label
SPHERE = ModelKey.baseline("sphere").label


def mean_object_radius(path: Path, rows: np.ndarray) -> float:
    """Radius of the sphere with the mean volume of the given models (from GT samples)."""
    with h5py.File(path, "r") as f:
        q = f["volume_occupancy"].shape[1] // 2  # the first half are uniform in [-.55, .55]^3
        occ = np.stack([f["volume_occupancy"][r, :q] for r in rows]).mean()
    volume = float(occ) * 1.1**3
    return (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)


def sphere_field(radius: float, colour: torch.Tensor):
    """A constant-colour solid sphere, as a field over ``(b, P, 3)`` points."""
    logit = torch.logit(colour.clamp(1e-3, 1 - 1e-3))

    def field_fn(idx: torch.Tensor, points: torch.Tensor):
        inside = (points.norm(dim=-1, keepdim=True) <= radius).float()
        return logit.to(points).expand(*points.shape[:-1], 3), inside * 500.0

    return field_fn


@dataclass
class Shapes:
    """Ground truth of several training shapes: surfaces ``(T, P, 3)``, volume samples
    ``(T, Q, 3)`` with inside flags ``(T, Q)`` and their model ids."""

    surfaces: torch.Tensor
    volume_points: torch.Tensor
    volume_inside: torch.Tensor
    ids: list[str]
    _trees: dict[int, cKDTree] = field(default_factory=dict, repr=False)

    def tree(self, index: int) -> cKDTree | None:
        """A k-d tree on surface ``index`` (built once; None off the CPU)."""
        if self.surfaces.device.type != "cpu":
            return None
        if index not in self._trees:
            self._trees[index] = cKDTree(self.surfaces[index].double().numpy())
        return self._trees[index]


@dataclass
class Baselines:
    """Per category: sphere radius, the medoid training shape (index into ``train``) and every
    training shape (for the oracle nearest neighbour)."""

    radius: dict[str, float]
    default_radius: float
    medoid: dict[str, int]
    train: dict[str, Shapes]


def medoid_index(surfaces: torch.Tensor, subsample: int = 256) -> int:
    """Index of the shape with the least summed Chamfer-L1 to the others; surfaces ``(k, P, 3)``.

    All pairs in one batched KNN, ``(k*k, S, 3)`` against ``(k*k, S, 3)``: callers keep k small
    (pairs grow as k^2).
    """
    sub = surfaces[:, :subsample]
    k, s = sub.shape[:2]
    a = sub[:, None].expand(k, k, s, 3).reshape(k * k, s, 3)
    b = sub[None].expand(k, k, s, 3).reshape(k * k, s, 3)
    d = knn_points(a, b, K=1).dists[..., 0].clamp(min=0).sqrt().mean(-1).view(k, k)
    return int((d + d.T).sum(1).argmin())


def build_baselines(cfg: ExperimentConfig, renders: Path, subsample: int = 256,
                    max_medoid_models: int = 64) -> Baselines:
    radius, medoid, train = {}, {}, {}
    with h5py.File(renders, "r") as f:
        n = int(f.attrs["complete_models"])
        cats = f["category"].asstr()[:n]
        splits = f["split"].asstr()[:n]
        ids = f["model_id"].asstr()[:n]
        train_radii = []
        for category in sorted(set(cats)):
            rows = np.flatnonzero((cats == category) & (splits == "train"))
            if len(rows) == 0:
                continue
            radius[category] = mean_object_radius(renders, rows)
            if category in cfg.data.categories:
                train_radii.append(radius[category])
            train[category] = Shapes(
                torch.from_numpy(np.stack([f["surface_points"][r] for r in rows])).float(),
                torch.from_numpy(np.stack([f["volume_points"][r] for r in rows])).float(),
                torch.from_numpy(np.stack([f["volume_occupancy"][r] for r in rows])).bool(),
                [str(ids[r]) for r in rows])
            # the medoid among the first training models: all pairs grow as k^2
            medoid[category] = medoid_index(train[category].surfaces[:max_medoid_models],
                                            subsample)
    default = float(np.mean(train_radii)) if train_radii else 0.35
    return Baselines(radius, default, medoid, train)


def shape_metrics(shapes: Shapes, index: int, item: EvalItem,
                  thresholds: tuple[float, ...]) -> dict[str, float]:
    """Metrics of training shape ``index`` used as the prediction for ``item``.

    Its inside/outside at the item's volume samples is that of its nearest own volume sample.
    """
    out = chamfer_fscore(shapes.surfaces[index], item.surface, thresholds)
    nearest = nearest_neighbours(item.volume_points, shapes.volume_points[index])[1]
    out["vol_iou"] = volumetric_iou(shapes.volume_inside[index][nearest], item.volume_inside)
    return out


def oracle_index(shapes: Shapes, item: EvalItem, threshold: float = 0.05,
                 subsample: int = 1024, candidates: int = 4) -> int:
    """The training shape with the best F-score at ``threshold`` against the item's truth.

    Every training shape is scored on ``subsample`` points of each surface (against the other
    surface in full); the best ``candidates`` are rescored on all points. This is retrieval with
    the answer in hand: the upper bound of any method that returns a training shape.
    """
    truth = item.surface
    truth_tree = (cKDTree(truth.double().numpy()) if truth.device.type == "cpu" else None)
    scores = []
    for t in range(shapes.surfaces.shape[0]):
        d_pred = nearest_distances(shapes.surfaces[t, :subsample], truth, truth_tree)
        d_true = nearest_distances(truth[:subsample], shapes.surfaces[t], shapes.tree(t))
        scores.append(scores_from_distances(d_pred, d_true, (threshold,))[f"fscore@{threshold:g}"])
    top = np.argsort(-np.asarray(scores), kind="stable")[:candidates].tolist()
    key = f"fscore@{threshold:g}"
    full = [scores_from_distances(nearest_distances(shapes.surfaces[i], truth, truth_tree),
                                  nearest_distances(truth, shapes.surfaces[i], shapes.tree(i)),
                                  (threshold,))[key] for i in top]
    return top[int(np.argmax(full))]


def baseline_rows(item: EvalItem, baselines: Baselines, cfg: ExperimentConfig,
                  intrinsics: Intrinsics | None) -> list[dict[str, Any]]:
    """Metrics of the sphere, medoid and oracle nearest-neighbour baselines on one item.

    Medoid and oracle exist where the item's category has training shapes (not for a zero-shot
    category, nor for a collection category that pre-training never saw).
    """
    e = cfg.evaluate
    thresholds = tuple(e.fscore_thresholds)
    # a zero-shot category must not use its own statistics: training categories' mean size
    radius = (baselines.default_radius if item.zero_shot or item.category not in
              baselines.radius else baselines.radius[item.category])
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(e.surface_points, 3, generator=g)
    sphere_surface = radius * directions / directions.norm(dim=-1, keepdim=True)
    sphere = chamfer_fscore(sphere_surface, item.surface, thresholds)
    sphere["vol_iou"] = volumetric_iou(item.volume_points.norm(dim=-1) <= radius,
                                       item.volume_inside)
    sphere_fn = sphere_field(radius, torch.full((3,), 0.5))
    if item.novel is not None and intrinsics is not None:
        rendered = render_network(lambda p: sphere_fn(None, p), item.novel["azimuth"],
                                  item.novel["elevation"], item.novel["distance"], intrinsics,
                                  cfg.model)
        sphere["mask_iou"] = float(mask_iou(rendered["mask"], item.novel["masks"]).mean())
    if (e.input_view and item.input_camera is not None and item.mask is not None
            and intrinsics is not None):
        # the input view's fit of a shape that knows nothing of the image: the floor that a
        # reconstruction's input_mask_iou is read against (renders only: a photo's camera is
        # searched on the model's own field)
        rendered = render_network(lambda p: sphere_fn(None, p),
                                  *(torch.tensor([v]) for v in item.input_camera), intrinsics,
                                  cfg.model)
        sphere["input_mask_iou"] = float(mask_iou(rendered["mask"][0], item.mask))
    rows = [{"model": SPHERE, **sphere}]
    shapes = baselines.train.get(item.category)
    if shapes is not None and not item.zero_shot:
        rows.append({"model": MEDOID, **shape_metrics(shapes, baselines.medoid[item.category],
                                                      item, thresholds)})
        best = oracle_index(shapes, item, threshold=float(PRIMARY.split("@")[1]))
        rows.append({"model": ORACLE, "oracle_model": shapes.ids[best],
                     **shape_metrics(shapes, best, item, thresholds)})
    return rows
