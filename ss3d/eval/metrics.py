"""3D metrics (README: Evaluation), on points sampled from both surfaces.

Conventions (both shapes in the canonical cube, side 1, so distances are fractions of it):

* ``d(p, Q)`` is the Euclidean distance from ``p`` to its nearest neighbour in ``Q``
  (PyTorch3D ``knn_points`` on CUDA, a SciPy k-d tree on the CPU: same answer, far faster there);
* Chamfer-L1 = ½ (mean_p d(p, G) + mean_g d(g, P)); Chamfer-L2 = the same with squared
  distances;
* F-score@τ = harmonic mean of precision (share of predicted points within τ of the truth)
  and recall (share of true points within τ of the prediction), Tatarchenko et al. 2019;
* volumetric IoU on the ground truth's inside/outside samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from pytorch3d.ops import knn_points, sample_points_from_meshes
from pytorch3d.structures import Meshes

if TYPE_CHECKING:  # SciPy's spatial package is slow to import: imported where used
    from scipy.spatial import cKDTree

__all__ = ["chamfer_fscore", "nearest_distances", "nearest_neighbours", "sample_mesh_surface",
           "scores_from_distances", "volumetric_iou"]


def sample_mesh_surface(verts: torch.Tensor, faces: torch.Tensor, count: int,
                        seed: int = 0) -> torch.Tensor:
    """``(count, 3)`` area-weighted surface samples of one mesh, reproducible from ``seed``.

    An empty mesh gives a single point at the origin, so that metrics stay finite (and bad).
    """
    if faces.shape[0] == 0:
        return torch.zeros(1, 3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        points = sample_points_from_meshes(Meshes([verts.float()], [faces.long()]), count)
    return points[0]


def nearest_neighbours(query: torch.Tensor, points: torch.Tensor, tree: cKDTree | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance ``(N,)`` from each of ``query (N, 3)`` to its nearest neighbour in
    ``points (M, 3)``, and that neighbour's index ``(N,)``.

    On CUDA this is PyTorch3D's ``knn_points``. On the CPU we deliberately use SciPy's k-d tree
    instead: PyTorch3D's CPU kernel compares all N·M pairs where the tree searches a few
    neighbourhoods (an order of magnitude faster at our sizes), and evaluation does this for
    every item, model and baseline. ``tree`` reuses a tree already built on ``points`` (CPU only).
    """
    if query.device.type == "cpu" and points.device.type == "cpu":
        from scipy.spatial import cKDTree

        tree = tree if tree is not None else cKDTree(points.detach().double().numpy())
        dist, idx = tree.query(query.detach().double().numpy(), k=1)
        return (torch.from_numpy(np.asarray(dist, dtype=np.float32)),
                torch.from_numpy(np.asarray(idx, dtype=np.int64)))
    knn = knn_points(query.float()[None], points.float()[None].to(query.device), K=1)
    return knn.dists[0, :, 0].clamp(min=0).sqrt(), knn.idx[0, :, 0]


def nearest_distances(query: torch.Tensor, points: torch.Tensor,
                      tree: cKDTree | None = None) -> torch.Tensor:
    """Only the distances of :func:`nearest_neighbours`: ``(N,)``."""
    return nearest_neighbours(query, points, tree)[0]


def scores_from_distances(d_pred: torch.Tensor, d_true: torch.Tensor,
                          thresholds: Sequence[float]) -> dict[str, float]:
    """Chamfer and F-scores from the two nearest-neighbour distance sets ``(N,)``, ``(M,)``."""
    out = {"chamfer_l1": float(0.5 * (d_pred.mean() + d_true.mean())),
           "chamfer_l2": float(0.5 * (d_pred.pow(2).mean() + d_true.pow(2).mean()))}
    for t in thresholds:
        precision = float((d_pred < t).float().mean())
        recall = float((d_true < t).float().mean())
        f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        out.update({f"fscore@{t:g}": f, f"precision@{t:g}": precision, f"recall@{t:g}": recall})
    return out


def chamfer_fscore(pred: torch.Tensor, truth: torch.Tensor,
                   thresholds: Sequence[float] = (0.05, 0.1)) -> dict[str, float]:
    """Chamfer-L1/L2 and F-score at each threshold between point sets ``(N, 3)`` and ``(M, 3)``.

    Returns ``{"chamfer_l1", "chamfer_l2", "fscore@0.05", "precision@0.05", "recall@0.05", ...}``.
    """
    truth = truth.to(pred.device)
    return scores_from_distances(nearest_distances(pred, truth), nearest_distances(truth, pred),
                                 thresholds)


def volumetric_iou(pred_inside: torch.Tensor, true_inside: torch.Tensor) -> float:
    """IoU of two boolean occupancies over the same sample points ``(Q,)``."""
    p, t = pred_inside.bool(), true_inside.bool().to(pred_inside.device)
    union = int((p | t).sum())
    return float((p & t).sum()) / union if union else 1.0
